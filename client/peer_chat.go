package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Chat travels on the negotiated data channel "chat" that newPeer opens
// with every peer: one JSON message per text, naming the room it is for.

// errPeerClosed: the peer connection is gone.
var errPeerClosed = errors.New("peer connection closed")

// chatMessage is the JSON on the chat channel.
type chatMessage struct {
	Room string    `json:"room"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// MaxMessageText caps a chat message, in bytes.
const MaxMessageText = 16 << 10

// maxChatFrame caps a chat frame: JSON may spell one byte of text in six
// (Go writes '<' as \u003c, and any encoder a control character), and
// the envelope takes the rest. A message within MaxMessageText must
// arrive whatever it holds.
const maxChatFrame = 6*MaxMessageText + 1024

func (p *peer) wireChat() {
	p.chat.OnOpen(func() {
		p.chatOpen.Store(true)
		p.flushConsent()
		m, info := p.Member(), p.Info()
		p.log.Debug("chat open", slog.String("conn", info.Kind()))
		for _, r := range p.Rooms() {
			p.host.emit(r, &PeerConnected{Room: r, Member: m, Info: info})
		}
	})
	p.chat.OnClose(func() { p.chatOpen.Store(false) })
	p.chat.OnMessage(func(msg webrtc.DataChannelMessage) {
		if !msg.IsString || len(msg.Data) > maxChatFrame {
			p.log.Debug("dropping malformed chat message")
			return
		}
		if isConsent(msg) {
			p.onConsent(msg.Data)
			return
		}
		var cm chatMessage
		if err := json.Unmarshal(msg.Data, &cm); err != nil || len(cm.Text) > MaxMessageText {
			p.log.Debug("dropping malformed chat message")
			return
		}
		room, ok := p.roomFor(cm.Room)
		if !ok {
			p.log.Debug("chat message for a room we do not share")
			return
		}
		p.host.emit(room, &Message{Room: room, From: p.Member(), Text: cm.Text, Time: cm.Time})
	})
}

func (p *peer) sendChat(room, text string) error {
	if !p.chatOpen.Load() {
		return fmt.Errorf("peer %s: %w", p.id, ErrNotConnected)
	}
	b, err := json.Marshal(chatMessage{Room: room, Text: text, Time: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("encode chat message: %w", err)
	}
	if err := p.chat.SendText(string(b)); err != nil {
		return fmt.Errorf("peer %s: send chat: %w", p.id, err)
	}
	return nil
}

// flushChats runs flushChat for every peer at once.
func flushChats(peers []*peer) {
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() { p.flushChat(chatFlushWait) })
	}
	wg.Wait()
}

// chatFlushWait bounds how long Close waits for chat messages a peer has
// not acknowledged yet.
const chatFlushWait = 2 * time.Second

// flushChat waits, at most d, until the peer has acknowledged every chat
// message queued to it. Room.Send returns once a message is queued, and
// closing the peer connection aborts the SCTP association with what it
// holds: a program that sent and closed at once (a bot that greets and
// leaves) lost its message. A browser's data channel, closed, sends what
// it holds first.
func (p *peer) flushChat(d time.Duration) {
	if !p.chatOpen.Load() || p.chat.BufferedAmount() == 0 || p.pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		return // nothing waits, or nothing would be acknowledged
	}
	drained := make(chan struct{})
	var once sync.Once
	p.chat.SetBufferedAmountLowThreshold(0)
	p.chat.OnBufferedAmountLow(func() { once.Do(func() { close(drained) }) })
	if p.chat.BufferedAmount() == 0 {
		return // acknowledged before the callback was set
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		p.log.Debug("close: chat messages not acknowledged in time", slog.Uint64("bytes", p.chat.BufferedAmount()))
	}
}
