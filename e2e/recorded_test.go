package e2e_test

import (
	"archive/tar"
	"context"
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

// TestBrowserIsRecorded: alice turns on Chromium's fake camera and opts in
// to the recorder; khadga-recorder's bot receives her VP8 and writes a
// shard whose frames are 224x224 RGB.
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
	rec, err := recorder.New(recorder.Config{Server: s.URL, Token: token, Room: "lab", Out: out, FPS: 5, ClipFrames: 10,
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
	shape := regexp.MustCompile(`'shape': \((\d+), (\d+), (\d+), (\d+)\)`)
	f, err := os.Open(shards[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatal("no frames.npy in the shard")
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(h.Name, ".frames.npy") {
			continue
		}
		head := make([]byte, 128)
		io.ReadFull(tr, head)
		m := shape.FindStringSubmatch(string(head))
		if m == nil || m[2] != "224" || m[3] != "224" || m[4] != "3" || m[1] == "0" {
			t.Fatalf("%s header %q, want shape (T, 224, 224, 3)", h.Name, head)
		}
		if !strings.Contains(h.Name, "lab_") {
			t.Fatalf("sample key %s does not name the room", h.Name)
		}
		t.Logf("%s: %s frames of 224x224 from the browser's camera", h.Name, m[1])
		return
	}
}

func written(r *recorder.Recorder) (n int64) {
	for _, tr := range r.Tracks() {
		n += tr.Stats.Written
	}
	return n
}
