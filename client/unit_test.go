package client

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/pion/webrtc/v4"
)

func TestPionLogsGoToSlog(t *testing.T) {
	var buf bytes.Buffer
	f := NewPionLoggerFactory(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l := f.NewLogger("ice")
	l.Warnf("pair %d failed", 7)
	l.Infof("routine %s", "chatter") // pion's Info is our Debug: hidden
	l.Tracef("very %s", "chatty")
	out := buf.String()
	if !strings.Contains(out, "pair 7 failed") || !strings.Contains(out, "pion=ice") || !strings.Contains(out, "level=WARN") {
		t.Fatalf("warning not bridged: %q", out)
	}
	if strings.Contains(out, "chatter") || strings.Contains(out, "chatty") {
		t.Fatalf("debug-level pion logs leaked at info: %q", out)
	}
}

// TestPionTrackLogIsLocked: pion logs a remote track with %+v; the
// bridge prints it through the track's locked getters, not its fields.
func TestPionTrackLogIsLocked(t *testing.T) {
	var buf bytes.Buffer
	l := NewPionLoggerFactory(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).NewLogger("pc")
	l.Debugf("got new track: %+v", &webrtc.TrackRemote{})
	out := buf.String()
	if !strings.Contains(out, "got new track: {ID: StreamID: Kind:unknown SSRC:0") || strings.Contains(out, "mu:") {
		t.Fatalf("track logged as %q; want the getters' summary", out)
	}
}

func TestBackoffGrowsWithJitterWithinBounds(t *testing.T) {
	o := defaultOptions()
	o.backoffMin, o.backoffMax = 100*time.Millisecond, 2*time.Second
	c := &Client{opts: o}
	for n := 0; n < 12; n++ {
		ceiling := min(o.backoffMin<<n, o.backoffMax)
		seen := map[time.Duration]bool{}
		for i := 0; i < 50; i++ {
			d := c.backoff(n)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: wait %v outside [%v, %v]", n, d, ceiling/2, ceiling)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Fatalf("attempt %d: no jitter", n)
		}
	}
}

func TestJWTExpiry(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		tok  string
		want int64
	}{
		{"h." + enc(`{"exp":1700000000,"sub":"alice"}`) + ".sig", 1700000000},
		{"h." + enc(`{"sub":"alice"}`) + ".sig", 0},
		{"not a jwt", 0},
		{"h.%%%.sig", 0},
		{"h." + enc(`[1,2]`) + ".sig", 0},
	}
	for _, tc := range cases {
		got := jwtExpiry(tc.tok)
		if (tc.want == 0) != got.IsZero() || (tc.want != 0 && got.Unix() != tc.want) {
			t.Errorf("jwtExpiry(%q) = %v, want %d", tc.tok, got, tc.want)
		}
	}
}

func TestValidFileName(t *testing.T) {
	for _, ok := range []string{"a.txt", "photo 1.jpg", "ünïcode.pdf", strings.Repeat("x", 255)} {
		if err := validFileName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../etc/passwd", "a/b", `a\b`, "/abs", "tab\there", "nl\n", "del\x7f", strings.Repeat("x", 256),
		"csi\u009b2J", "invoice\u202efdp.exe", "bad\xffutf8"} {
		if err := validFileName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestWireSignalExactlyOneField(t *testing.T) {
	var s wireSignal
	if s.valid() {
		t.Fatal("empty signal valid")
	}
	s.Renegotiate = &renegotiate{Video: 1}
	if !s.valid() {
		t.Fatal("renegotiate alone invalid")
	}
	s.Candidate = &proto.ICECandidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}
	if s.valid() {
		t.Fatal("two fields valid")
	}
}
