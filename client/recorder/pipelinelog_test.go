//go:build cgo

package recorder

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/client/media/vpx"
	"github.com/khadga/khadga/internal/testlog"
)

// TestPipelineNamesThePeerOnce: a pipeline given a logger (the recorder
// gives the track's, which names the peer and the track) logs with it as
// it is; one given none names the peer and track itself. Before, the
// recorder's "clip written" lines said peer= twice.
func TestPipelineNamesThePeerOnce(t *testing.T) {
	for _, given := range []bool{true, false} {
		var logs testlog.Buffer
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
