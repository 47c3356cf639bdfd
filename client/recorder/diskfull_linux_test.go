//go:build cgo

package recorder

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/khadga/khadga/client/media/vpx"
)

// smallFSEnv holds, in the copy of the test binary that runs in
// namespaces of its own, the directory to mount a small tmpfs on.
const smallFSEnv = "KHADGA_RECORDER_TEST_SMALL_FS"

// inSmallFS runs the calling test again in user and mount namespaces of
// its own, where it may mount a tmpfs without being root, and returns
// the directory of a tmpfs of size bytes in that copy; in the caller it
// returns "" once the copy has passed. The mount dies with the copy.
func inSmallFS(t *testing.T, size string) string {
	t.Helper()
	if dir := os.Getenv(smallFSEnv); dir != "" {
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
			t.Fatalf("mount a tmpfs in the test's namespaces: %v", err)
		}
		return dir
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), smallFSEnv+"="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Skipf("cannot start the test in user and mount namespaces of its own (unprivileged user namespaces off?), so no small tmpfs: %v", err)
	}
	t.Logf("on a %s tmpfs:\n%s", size, out)
	if err != nil {
		t.Fatalf("the test on a small tmpfs failed: %v", err)
	}
	return ""
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return path
		}
	}
}

// TestDiskFullRecovers: a track whose writes fail because the disk is full
// drops its frames, and records again once there is room, with every
// shard whole, in the manifest and read by numpy. A write error used to
// stop the track's recording for good, and with the disk shared by every
// track, everyone's.
func TestDiskFullRecovers(t *testing.T) {
	dir := inSmallFS(t, "2m")
	if dir == "" {
		return
	}
	defer func(d time.Duration) { writeRetry = d }(writeRetry)
	writeRetry = 0 // try again at the next frame
	cfg := OutputConfig{Dir: filepath.Join(dir, "out"), Room: "lab", Size: Size{W: 64, H: 64}, ClipFrames: 10, NoSync: true, Logger: testLogger(t)}
	out, err := OpenOutput(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	filler := fill(t, dir)
	p, err := NewPipeline(out, TrackInfo{Peer: "alice", Codec: vpx.VP8}, TrackOptions{QueueFrames: 1000, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ReadRTP(t.Context(), newGenSource(t, vpx.VP8, 64, 48, 30, 0)); err != nil {
		t.Fatal(err)
	}
	// Wait until the writer has met the full disk, then make room.
	for deadline := time.Now().Add(e2eTimeout); p.Stats().Unwritten == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no write failed on a full disk: %+v", p.Stats())
		}
		time.Sleep(10 * time.Millisecond) // polling the writer's counters
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := p.ReadRTP(t.Context(), newGenSource(t, vpx.VP8, 64, 48, 30, 0)); err != nil {
		t.Fatal(err)
	}
	st, err := p.Close()
	t.Logf("stats %+v; %v", st, err)
	if st.Written < 30 || st.Written+st.Unwritten != st.Kept {
		t.Errorf("after the disk had room again %d frames written, %d not, of %d kept; want the 30 sent since", st.Written, st.Unwritten, st.Kept)
	}
	clips := loadShards(t, cfg.Dir, cfg.Size)
	var frames int
	for _, c := range clips {
		frames += len(c.frames)
	}
	if int64(frames) != st.Written {
		t.Errorf("%d frames in shards, %d written", frames, st.Written)
	}
	for _, sh := range readManifest(t, cfg.Dir) {
		if !sumMatches(t, filepath.Join(cfg.Dir, sh.File), sh) {
			t.Errorf("%s: checksum is not the file's", sh.File)
		}
	}
	checkNoPartials(t, cfg.Dir)
	checkNumpyMatchesGo(t, cfg.Dir, clips)
}

// TestDiskFullLeavesWholeLines: a manifest, chat or consent line that the
// disk has no room for is not written at all, not in part: a torn line
// would run into the next one, and the file would no longer be JSON lines.
func TestDiskFullLeavesWholeLines(t *testing.T) {
	dir := inSmallFS(t, "1m")
	if dir == "" {
		return
	}
	rr, err := openRoom(OutputConfig{Dir: filepath.Join(dir, "out"), Room: "lab", Size: Size{W: 8, H: 8}, ClipFrames: 1, NoSync: true, Logger: testLogger(t)}, testLogger(t), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.close()
	long := strings.Repeat("x", MaxChatText)
	if err := rr.out.WriteChat(ChatLine{Peer: "p", Text: "before"}); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, dir)
	// One page free: a long line fits in part.
	if err := os.Truncate(filler, mustSize(t, filler)-4096); err != nil {
		t.Fatal(err)
	}
	if err := rr.out.WriteChat(ChatLine{Peer: "p", Text: long}); err == nil {
		t.Fatal("a chat line longer than the room left was written")
	}
	if err := rr.out.commit(Shard{File: long}); err == nil {
		t.Fatal("a manifest line longer than the room left was written")
	}
	if err := rr.writeConsent(ConsentLine{Peer: long}); err == nil {
		t.Fatal("a consent line longer than the room left was written")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := rr.out.WriteChat(ChatLine{Peer: "p", Text: "after"}); err != nil {
		t.Fatal(err)
	}
	if err := rr.out.commit(Shard{File: "after"}); err != nil {
		t.Fatal(err)
	}
	if err := rr.writeConsent(ConsentLine{Peer: "after"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lab-chat.jsonl", "manifest.jsonl", "lab-consent.jsonl"} {
		b, err := os.ReadFile(filepath.Join(dir, "out", name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("xxx")) || !bytes.HasSuffix(b, []byte("\n")) {
			t.Errorf("%s holds part of a line (%d bytes)", name, len(b))
		}
	}
	readManifest(t, filepath.Join(dir, "out"))
}

func mustSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
