//go:build cgo

package recorder

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// consentLines reads a room's consent log.
func consentLines(t *testing.T, path string) []ConsentLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []ConsentLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l ConsentLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %q: %v", path, sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// waitConsent polls a consent log until it has n lines. The log is the
// recorder's durable record; there is no event for it.
func waitConsent(t *testing.T, path string, n int) []ConsentLine {
	t.Helper()
	deadline := time.Now().Add(e2eTimeout)
	for {
		if _, err := os.Stat(path); err == nil {
			if ls := consentLines(t, path); len(ls) >= n {
				return ls
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never had %d lines", path, n)
		}
		time.Sleep(20 * time.Millisecond) // polling a file another goroutine appends to
	}
}

// publish sends an endless test pattern from room to peer with consent.
func publish(t *testing.T, room *client.Room, peer string) *client.Publication {
	t.Helper()
	src, err := media.NewTestPattern(media.PatternConfig{FPS: 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return publishTo(t, room, src, peer)
}

// publishTo publishes src in r and sends it to the recorder with consent.
func publishTo(t *testing.T, r *client.Room, src client.VideoSource, recorder string) *client.Publication {
	t.Helper()
	pub, err := r.PublishVideo(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	if err := pub.SendTo(recorder, client.ConsentToRecording()); err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestE2ERoomsAndConsent: one recorder records two rooms, each into its
// own directory with its own manifest, chat and consent logs. Consent is
// logged when the peer grants it, before its first frame; clips carry
// that time; withdrawing consent finishes the clip and logs it, and a new
// grant starts clips with the new time.
func TestE2ERoomsAndConsent(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	dir := t.TempDir()
	rec := startRecorder(t, s, "north", dir, func(c *Config) {
		c.Rooms, c.FPS, c.ClipFrames = []string{"north", "south"}, 10, 20
	})
	_, north := joinPeer(t, s, "alice", "north", rec.self.Peer)
	_, south := joinPeer(t, s, "bob", "south", rec.self.Peer)
	northLog := filepath.Join(dir, "north", "north-consent.jsonl")

	apub := publish(t, north, rec.self.Peer)
	first := waitConsent(t, northLog, 1)[0]
	publish(t, south, rec.self.Peer)
	waitFrames(t, rec, "alice", 45)
	waitFrames(t, rec, "bob", 45)

	if err := apub.StopSending(rec.self.Peer); err != nil {
		t.Fatal(err)
	}
	if l := waitConsent(t, northLog, 2)[1]; l.Granted || l.User != "alice" {
		t.Fatalf("second consent line %+v, want alice withdrawing", l)
	}
	if err := apub.SendTo(rec.self.Peer, client.ConsentToRecording()); err != nil {
		t.Fatal(err)
	}
	again := waitConsent(t, northLog, 3)[2]
	if !again.Granted || !again.Time.After(first.Time) {
		t.Fatalf("third consent line %+v, want a later grant", again)
	}
	before := waitFrames(t, rec, "alice", 0)
	waitFrames(t, rec, "alice", before+45)
	rec.stop(t)

	for room, user := range map[string]string{"north": "alice", "south": "bob"} {
		clips := loadShards(t, filepath.Join(dir, room), DefaultSize)
		if len(clips) < 2 {
			t.Fatalf("%s: %d clips", room, len(clips))
		}
		for _, c := range clips {
			if c.meta.Room != room || c.meta.User != user {
				t.Fatalf("%s holds a clip of %s in %s", room, c.meta.User, c.meta.Room)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, room, "manifest.jsonl")); err != nil {
			t.Fatal(err)
		}
	}
	var grants = map[int64]int{}
	for _, c := range loadShards(t, filepath.Join(dir, "north"), DefaultSize) {
		ct := c.meta.ConsentTime
		switch {
		case ct.Equal(first.Time):
		case ct.Equal(again.Time):
			if c.meta.StartUS < again.Time.UnixMicro() {
				t.Errorf("clip %d starts at %d, before the consent it carries (%v)", c.meta.Clip, c.meta.StartUS, again.Time)
			}
		default:
			t.Errorf("clip %d carries consent time %v, which no grant has", c.meta.Clip, ct)
		}
		if ct.UnixMicro() > c.meta.StartUS {
			t.Errorf("clip %d: consent %v after its first frame %d", c.meta.Clip, ct, c.meta.StartUS)
		}
		grants[ct.UnixMicro()]++
	}
	if len(grants) != 2 {
		t.Errorf("north's clips carry %d consent times, want the two grants", len(grants))
	}
	if ls := consentLines(t, filepath.Join(dir, "south", "south-consent.jsonl")); len(ls) != 1 || ls[0].User != "bob" {
		t.Errorf("south's consent log: %+v", ls)
	}
}
