//go:build cgo

package recorder

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/khadga/khadga/client/media/vpx"
)

// lockedBuffer is a bytes.Buffer that a logger may write from several
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPipelineNamesThePeerOnce: a pipeline given a logger (the recorder
// gives the track's, which names the peer and the track) logs with it as
// it is; one given none names the peer and track itself. Before, the
// recorder's "clip written" lines said peer= twice.
func TestPipelineNamesThePeerOnce(t *testing.T) {
	for _, given := range []bool{true, false} {
		var logs lockedBuffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		out, err := OpenOutput(OutputConfig{Dir: t.TempDir(), Room: "lab", Size: Size{W: 32, H: 32}, ClipFrames: 5, NoSync: true, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		opts := TrackOptions{FPS: 30, QueueFrames: 100}
		if given {
			opts.Logger = log.With(slog.String("peer", "p1"), slog.String("track", "cam"))
		}
		runPipeline(t, out, TrackInfo{Peer: "p1", User: "alice", Track: "cam", Codec: vpx.VP8, Consent: time.Now()}, opts, newGenSource(t, vpx.VP8, 64, 48, 20, 0))
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		written := 0
		for _, line := range strings.Split(logs.String(), "\n") {
			if !strings.Contains(line, "clip written") {
				continue
			}
			written++
			if strings.Count(line, " peer=") != 1 || strings.Count(line, " track=") != 1 {
				t.Errorf("logger given %v: %s", given, line)
			}
		}
		if written == 0 {
			t.Fatalf("logger given %v: no clip written:\n%s", given, logs.String())
		}
	}
}
