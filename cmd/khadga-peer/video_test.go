//go:build cgo

package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestVideoProcesses: one process sends 60 frames of the test pattern to
// bob, bob's process records them; the IVF decodes to frames in order.
func TestVideoProcesses(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice, bob := login(ctx, t, s, "alice"), login(ctx, t, s, "bob")
	rec := t.TempDir()
	recorder := peerCmd(ctx, t, bob, "", "video", "--room", "studio", "--record-to", rec, "--loopback", "--timeout", "15s")
	var recOut strings.Builder
	recorder.Stdout = &recOut
	recErr, err := recorder.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := recorder.Start(); err != nil {
		t.Fatal(err)
	}
	// Before anyone else joins, the recorder says what it will do.
	lines := bufio.NewScanner(recErr)
	if !lines.Scan() || lines.Text() != "joined studio as bob: will record the video others send to "+rec+" (Ctrl-C to stop)" {
		t.Fatalf("the recorder's first line: %q, %v", lines.Text(), lines.Err())
	}
	go io.Copy(io.Discard, recErr)
	out, err := peerCmd(ctx, t, alice, "", "video", "--room", "studio", "--pattern", "--frames", "60", "--to", "bob", "--loopback", "--timeout", "30s").CombinedOutput()
	if code := exitCode(t, err); code != exitOK || !strings.Contains(string(out), "sent 60 frames") {
		t.Fatalf("sender exited %d:\n%s", code, out)
	}
	if code := exitCode(t, recorder.Wait()); code != exitOK {
		t.Fatalf("recorder exited %d:\n%s", code, recOut.String())
	}
	files, _ := filepath.Glob(filepath.Join(rec, "alice-*.ivf"))
	if len(files) != 1 {
		t.Fatalf("recordings %v\n%s", files, recOut.String())
	}
	counters := decodeCounters(t, files[0])
	if len(counters) < 50 {
		t.Fatalf("decoded %d of 60 frames", len(counters))
	}
	for i := 1; i < len(counters); i++ {
		if counters[i] <= counters[i-1] {
			t.Fatalf("counter %d after %d", counters[i], counters[i-1])
		}
	}
}

func decodeCounters(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	d, err := media.NewDecoder(media.MimeTypeVP8)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var cs []int
	for {
		frame, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return cs
		}
		if err != nil {
			t.Fatal(err)
		}
		img, err := d.Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		if img == nil {
			continue
		}
		if n, ok := media.ReadCounter(img); ok {
			cs = append(cs, n)
		}
	}
}
