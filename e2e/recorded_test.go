package e2e_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/recorder"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestBrowserIsRecorded: alice turns on Chromium's fake camera and
// microphone and opts in to the recorder; khadga-recorder's bot logs her
// consent when she gives it, receives her VP8 and Opus, and writes a shard
// whose frames are 224x224 RGB, with her audio at 16 kHz beside them and
// the consent time in the clip's metadata.
func TestBrowserIsRecorded(t *testing.T) {
	if len(recorder.Codecs()) == 0 {
		t.Skip("built without cgo: the recorder has no libvpx to decode with")
	}
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("lab")
	alice.press("camera")

	token, _, err := s.Keys().IssueAccess(auth.Claims{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"lab"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	out := t.TempDir()
	rec, err := recorder.New(recorder.Config{Server: s.URL, Token: token, Rooms: []string{"lab"}, Out: out, FPS: 5, ClipFrames: 10,
		NoSync: true, Logger: signalingtest.Logger(t), ClientOptions: []client.Option{client.WithSettingEngine(se)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	stopped := make(chan struct{})
	go func() { runErr = rec.Run(ctx, nil); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped })

	alice.waitConnected("rec")
	alice.press("share-recorder")
	deadline := time.Now().Add(waitTimeout)
	for written(rec) < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the recorder wrote %d frames of alice's camera in %v", written(rec), waitTimeout)
		}
		time.Sleep(50 * time.Millisecond) // polling the recorder's counters
	}
	cancel() // like SIGTERM: finish the clip and close the shard
	<-stopped
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		t.Fatalf("recorder: %v", runErr)
	}

	shards, _ := filepath.Glob(filepath.Join(out, "lab-*.tar"))
	if len(shards) == 0 {
		t.Fatalf("no shard in %s", out)
	}
	members := readTar(t, shards[0])
	var key string
	for name := range members {
		if k, ok := strings.CutSuffix(name, ".frames.npy"); ok {
			key = k
		}
	}
	shape := regexp.MustCompile(`'shape': \((\d+), (\d+), (\d+), (\d+)\)`)
	m := shape.FindStringSubmatch(string(members[key+".frames.npy"][:128]))
	if m == nil || m[2] != "224" || m[3] != "224" || m[4] != "3" || m[1] == "0" {
		t.Fatalf("%s.frames.npy: header %q, want shape (T, 224, 224, 3)", key, members[key+".frames.npy"][:128])
	}
	if !strings.HasPrefix(key, "lab_") {
		t.Fatalf("sample key %s does not name the room", key)
	}
	var meta recorder.ClipMeta
	if err := json.Unmarshal(members[key+".json"], &meta); err != nil {
		t.Fatal(err)
	}
	a := meta.Audio
	if a == nil || a.Rate != 16000 || a.Samples == 0 || a.Missing >= a.Samples || !strings.Contains(string(members[key+".audio.npy"][:128]), "'<f4'") {
		t.Fatalf("the clip's audio: %+v, header %q", a, members[key+".audio.npy"])
	}
	var consent recorder.ConsentLine
	line, err := os.ReadFile(filepath.Join(out, "lab-consent.jsonl"))
	if err != nil || json.Unmarshal(line, &consent) != nil || consent.User != "alice" || !consent.Granted {
		t.Fatalf("consent log %q: %v", line, err)
	}
	if !meta.ConsentTime.Equal(consent.Time) || meta.ConsentTime.UnixMicro() > meta.StartUS {
		t.Fatalf("consent_time %v, logged %v, first frame %v: want the logged grant, before the frames",
			meta.ConsentTime, consent.Time, time.UnixMicro(meta.StartUS))
	}
	t.Logf("%s: %s frames of 224x224 from the browser's camera, %d audio samples (%d missing, %s sync), consent at %v",
		key, m[1], a.Samples, a.Missing, a.Sync, consent.Time)
}

// readTar reads every member of a tar file.
func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b
	}
}

func written(r *recorder.Recorder) (n int64) {
	for _, tr := range r.Tracks() {
		n += tr.Stats.Written
	}
	return n
}
