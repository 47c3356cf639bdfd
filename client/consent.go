package client

import (
	"encoding/json"
	"log/slog"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/proto"
)

// Consent to recording. A client sends media to a peer with the recorder
// role only after its user consented (ConsentToRecording), and it tells
// the recorder when: on the chat channel, as
//
//	{"room": "lab", "consent": true, "time": "2026-12-05T10:00:00Z"}
//
// when the user grants it (the first SendTo with ConsentToRecording to
// that recorder in the room), and with "consent": false when nothing of
// the room goes to the recorder any more (StopSending). The recorder thus
// records when consent was given, not when the first packet happened to
// arrive, and records nothing of a peer that did not say so. A message
// queued before the chat channel opens is sent when it does.

// RecordingConsent: a member granted or withdrew its consent to being
// recorded by this client (a recorder) in Room.
type RecordingConsent struct {
	Room    string
	From    proto.Member
	Granted bool
	// Time is the sender's clock when its user decided; Received is this
	// client's when the message came.
	Time     time.Time
	Received time.Time
}

// consentMessage is the chat channel message for consent.
type consentMessage struct {
	Room    string    `json:"room"`
	Consent bool      `json:"consent"`
	Time    time.Time `json:"time"`
}

// sendConsent tells the peer (a recorder) that the user granted or
// withdrew consent to recording in room, now or once the chat channel
// opens (flushConsent).
func (p *peer) sendConsent(room string, granted bool) {
	m := consentMessage{Room: room, Consent: granted, Time: time.Now().UTC()}
	p.mu.Lock()
	if !p.chatOpen.Load() {
		if p.pendingConsent == nil {
			p.pendingConsent = make(map[string]consentMessage)
		}
		p.pendingConsent[room] = m // the last word per room is what counts
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.writeConsent(m)
}

// flushConsent sends what sendConsent queued while the chat channel was
// not open. The chat channel's OnOpen calls it after setting chatOpen.
func (p *peer) flushConsent() {
	p.mu.Lock()
	pending := p.pendingConsent
	p.pendingConsent = nil
	p.mu.Unlock()
	for _, m := range pending {
		p.writeConsent(m)
	}
}

func (p *peer) writeConsent(m consentMessage) {
	b, err := json.Marshal(m)
	if err == nil {
		err = p.chat.SendText(string(b))
	}
	if err != nil {
		p.log.Warn("telling the recorder about consent", slog.String("room", m.Room), slog.Bool("consent", m.Consent), slog.Any("err", err))
	}
}

// consentsTo reports whether a publication of the room still sends to the
// recorder peerID with consent.
func (r *Room) consentsTo(peerID string) bool {
	for _, pub := range r.publications() {
		pub.mu.Lock()
		t := pub.targets[peerID]
		pub.mu.Unlock()
		if t != nil && t.consent {
			return true
		}
	}
	return false
}

// onConsent handles a consent message from the chat channel.
func (p *peer) onConsent(raw []byte) {
	var m consentMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		p.log.Debug("dropping malformed consent message")
		return
	}
	room, ok := p.roomFor(m.Room)
	if !ok {
		p.log.Debug("consent for a room we do not share")
		return
	}
	p.host.emit(room, &RecordingConsent{Room: room, From: p.Member(), Granted: m.Consent, Time: m.Time, Received: time.Now()})
}

// isConsent reports whether a chat channel message is about consent.
func isConsent(msg webrtc.DataChannelMessage) bool {
	var probe struct {
		Consent *bool `json:"consent"`
	}
	return json.Unmarshal(msg.Data, &probe) == nil && probe.Consent != nil
}

func (*RecordingConsent) event() {}
