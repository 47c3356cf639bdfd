package recorder

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
)

// packets is an RTPReader of n packets; before each, hook may act.
type packets struct {
	n, i int
	hook func(i int)
}

func (p *packets) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	if p.i >= p.n {
		return nil, nil, io.EOF
	}
	if p.hook != nil {
		p.hook(p.i)
	}
	p.i++
	return &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(p.i - 1)}}, nil, nil
}

// TestConsentGate: packets before the grant are dropped, those after it
// pass with the grant's time, a withdrawal ends the stretch, and a new
// grant starts a new one with its own time.
func TestConsentGate(t *testing.T) {
	var c consentState
	t1, t2 := time.Unix(100, 0), time.Unix(200, 0)
	src := &packets{n: 10, hook: func(i int) {
		switch i {
		case 3:
			c.set(true, t1)
		case 6:
			c.set(false, t1.Add(time.Second))
		case 8:
			c.set(true, t2)
		}
	}}
	g := &consentReader{src: src, c: &c}
	at, err := g.await()
	if err != nil || !at.Equal(t1) || g.dropped != 3 {
		t.Fatalf("await = %v, %v after dropping %d; want %v after 3", at, err, g.dropped, t1)
	}
	var got []uint16
	for {
		p, _, err := g.ReadRTP()
		if errors.Is(err, errConsentWithdrawn) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.SequenceNumber)
	}
	if len(got) != 3 || got[0] != 3 || got[2] != 5 {
		t.Fatalf("recorded packets %v, want 3 4 5", got)
	}
	at, err = g.await()
	if err != nil || !at.Equal(t2) {
		t.Fatalf("second grant: %v %v", at, err)
	}
	if p, _, err := g.ReadRTP(); err != nil || p.SequenceNumber != 8 {
		t.Fatalf("first packet of the second stretch: %v %v", p, err)
	}
}

// TestConsentChangesBounded: repeats change nothing, and a peer that
// toggles past maxConsentChanges is taken as withdrawn.
func TestConsentChangesBounded(t *testing.T) {
	var c consentState
	now := time.Unix(1, 0)
	if changed, _ := c.set(false, now); changed {
		t.Fatal("a withdrawal with nothing granted counted as a change")
	}
	for i := range maxConsentChanges {
		if changed, limited := c.set(i%2 == 0, now); !changed || limited {
			t.Fatalf("change %d: changed %v limited %v", i, changed, limited)
		}
		if changed, _ := c.set(i%2 == 0, now); changed {
			t.Fatal("a repeat counted as a change")
		}
	}
	if _, _, ok := c.current(); ok {
		t.Fatal("want withdrawn after an even number of changes")
	}
	if changed, limited := c.set(true, now); changed || !limited {
		t.Fatalf("past the limit: changed %v limited %v", changed, limited)
	}
	if _, _, ok := c.current(); ok {
		t.Fatal("a grant past the limit took effect")
	}
}

// TestFinishedReportsBounded: the reports of finished tracks, one each
// time a peer adds and removes a track or withdraws and grants consent,
// are kept up to maxReports, the newest; they used to be kept for as long
// as the recorder ran.
func TestFinishedReportsBounded(t *testing.T) {
	r := &Recorder{live: map[string]*liveTrack{}}
	for i := range 10 * maxReports {
		r.finished(TrackReport{Info: TrackInfo{Track: fmt.Sprint(i)}})
	}
	got := r.Tracks()
	if len(got) > maxReports || len(got) < maxReports/2 || got[len(got)-1].Info.Track != fmt.Sprint(10*maxReports-1) {
		t.Fatalf("%d reports kept, the last of track %s", len(got), got[len(got)-1].Info.Track)
	}
}

// TestConsentAloneKeepsNoAudio: the ring a peer's audio is kept in is
// made when its audio comes, not when it consents: consent messages, with
// no media, from the 32 connections one user may have made the recorder
// hold 32 rings (4.5 MB each by default, 38 MB with long clips).
func TestConsentAloneKeepsNoAudio(t *testing.T) {
	rr, err := openRoom(OutputConfig{Dir: t.TempDir(), Room: "lab", Size: Size{W: 8, H: 8}, ClipFrames: 1, NoSync: true}, testLogger(t), maxAudioKept)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 32 {
		rr.consent(&client.RecordingConsent{Room: "lab", From: proto.Member{Peer: fmt.Sprint("p", i), User: "mallory"}, Granted: true, Received: time.Now()})
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("32 consents allocated %d MB", grew>>20)
	}
}

// TestChatFloodBounded: a room member decides how much text it sends the
// recorder, and every line went to the chat log: one flooding member
// could fill the recorder's disk at the speed of its data channel (tens
// of MB/s), which stopped every track's recording and stayed full. Each
// user's lines now have a byte budget (chatRate, chatBurst), over all of
// its sessions; lines past it are dropped and counted, and other users'
// lines are written as before.
func TestChatFloodBounded(t *testing.T) {
	dir := t.TempDir()
	rr, err := openRoom(OutputConfig{Dir: dir, Room: "lab", Size: Size{W: 8, H: 8}, ClipFrames: 1, NoSync: true}, testLogger(t), maxAudioKept)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.close()
	text := strings.Repeat("\x01", MaxChatText) // six bytes each in JSON
	const lines = 400
	start := time.Now()
	for i := range lines {
		rr.chat(&client.Message{Room: "lab", From: proto.Member{Peer: fmt.Sprint("p", i%32), User: "mallory"}, Text: text})
	}
	elapsed := time.Since(start)
	rr.chat(&client.Message{Room: "lab", From: proto.Member{Peer: "q", User: "alice"}, Text: "still heard"})
	st, err := os.Stat(filepath.Join(dir, "lab-chat.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	line := int64(7*MaxChatText + 256)
	if most := chatBurst + int64(elapsed.Seconds()*chatRate) + line + 1024; st.Size() > most {
		t.Fatalf("%d lines of %d bytes from one user in %v wrote %d bytes to the chat log, want at most %d", lines, len(text), elapsed, st.Size(), most)
	}
	b, err := os.ReadFile(filepath.Join(dir, "lab-chat.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"text":"still heard"`) {
		t.Fatal("another user's line was not written")
	}
	if rr.chatDropped.Load() == 0 {
		t.Fatal("no dropped line was counted")
	}
}
