package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/client/media"
	"github.com/khadga/khadga/client/recorder"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
)

const timeout = 60 * time.Second

func TestFlags(t *testing.T) {
	t.Setenv("KHADGA_TOKEN", "")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--room", "lab", "--size", "3"}, 2, `size "3"`},
		{[]string{"--room", "lab", "--fit", "zoom", "--token", "x"}, 2, `fit "zoom"`},
		{[]string{"--room", "lab"}, 2, "no token"},
		{[]string{"--token", "x"}, 2, "--room is required"},
		{[]string{"--token", "x", "--room", "lab", "--format", "hdf5"}, 2, `format "hdf5"`},
		{[]string{"--token", "x", "--room", "lab", "--checksum", "md5"}, 2, `checksum "md5"`},
		{[]string{"--token", "x", "--room", "lab", "extra"}, 2, "unexpected arguments"},
		{[]string{"--token", "x", "--room", "lab", "--budget-window", "10ms"}, 2, "budget window 10ms"},
		{[]string{"--token", "x", "--room", "lab", "--max-waiting", "5000"}, 2, "max waiting 5000"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		if code := run(c.args, &out); code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, output %q; want %d and %q", c.args, code, out.String(), c.code, c.want)
		}
	}
	cfg, err := parseFlags([]string{"--room", "lab", "--token", "x", "--size", "64x32", "--fit", "pad", "--format", "safetensors", "--checksum", "sha256"}, io.Discard)
	if err != nil || cfg.Size != (recorder.Size{W: 64, H: 32}) || cfg.Fit != recorder.FitPad || cfg.Format != recorder.FormatSafetensors || cfg.Checksum != recorder.ChecksumSHA256 || cfg.FPS != 5 || cfg.ClipFrames != 150 || cfg.NoAudio {
		t.Errorf("parsed %+v, %v", cfg, err)
	}
	cfg, err = parseFlags([]string{"--room", "north,south", "--room", "east", "--token", "x", "--no-audio"}, io.Discard)
	if err != nil || strings.Join(cfg.Rooms, " ") != "north south east" || !cfg.NoAudio {
		t.Errorf("several rooms: %v, audio off %v: %v", cfg.Rooms, cfg.NoAudio, err)
	}
	cfg, err = parseFlags([]string{"--room", "lab", "--token", "x"}, io.Discard)
	if err != nil || cfg.CPUBudget != recorder.DefaultCPUBudget || cfg.BudgetWindow != recorder.DefaultBudgetWindow || cfg.MaxWaiting != recorder.DefaultMaxWaiting {
		t.Errorf("budget and waiting defaults: %g over %v, %d waiting: %v", cfg.CPUBudget, cfg.BudgetWindow, cfg.MaxWaiting, err)
	}
	cfg, err = parseFlags([]string{"--room", "lab", "--token", "x", "--cpu-budget", "-1", "--budget-window", "10s", "--max-waiting", "8"}, io.Discard)
	if err != nil || cfg.CPUBudget != -1 || cfg.BudgetWindow != 10*time.Second || cfg.MaxWaiting != 8 {
		t.Errorf("budget and waiting: %g over %v, %d waiting: %v", cfg.CPUBudget, cfg.BudgetWindow, cfg.MaxWaiting, err)
	}
	for _, bad := range [][]string{{"--room", "a,a"}, {"--room", "../x"}} {
		if _, err := parseFlags(append(bad, "--token", "x"), io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestConfigLayers: a YAML file, then KHADGA_RECORDER_* variables (the
// token's is KHADGA_TOKEN), then flags, and --token-file over every token.
func TestConfigLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "recorder.yaml")
	if err := os.WriteFile(file, []byte("room: lab\nfps: 2\nsize: 64x48\nformat: safetensors\nout: /from/file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KHADGA_RECORDER_OUT", "/from/env")
	t.Setenv("KHADGA_RECORDER_FPS", "3")
	t.Setenv("KHADGA_TOKEN", "env-token")
	cfg, err := parseFlags([]string{"--config", file, "--fps", "4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rooms) != 1 || cfg.Rooms[0] != "lab" || cfg.Size != (recorder.Size{W: 64, H: 48}) || cfg.Format != recorder.FormatSafetensors {
		t.Errorf("file settings lost: %+v", cfg)
	}
	if cfg.Out != "/from/env" || cfg.FPS != 4 || cfg.Token != "env-token" {
		t.Errorf("out %q fps %g token %q: want the environment's out, the flag's fps, KHADGA_TOKEN", cfg.Out, cfg.FPS, cfg.Token)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = parseFlags([]string{"--config", file, "--token", "flag-token", "--token-file", tokenFile}, io.Discard); err != nil || cfg.Token != "file-token" {
		t.Errorf("token %q, %v: want --token-file's", cfg.Token, err)
	}
	if err := os.WriteFile(file, []byte("room: lab\nsize: {w: 1}\nfit: zoom\nroom: again\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = parseFlags([]string{"--config", file}, io.Discard)
	for _, want := range []string{file + ":2: size: want a single value, got a mapping", file + `:3: fit: fit "zoom"`, file + ":4: room: repeated"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// TestWithoutCgo builds the recorder without cgo and checks that it says so.
func TestWithoutCgo(t *testing.T) {
	bin := build(t, "CGO_ENABLED=0")
	cmd := exec.Command(bin, "--room", "lab", "--token", "x")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "built without libvpx") {
		t.Errorf("exit %d (%v), output %q", code, err, out)
	}
}

func build(t *testing.T, env ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "khadga-recorder")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestStopMidClip runs the real binary against a real server while a peer
// streams the test pattern, and stops it in the middle of a clip: with
// SIGTERM it finishes the clip and exits 0; with SIGKILL it leaves only
// complete shards (plus a hidden partial file, never matched by shard globs,
// which the next run removes).
func TestStopMidClip(t *testing.T) {
	if len(recorder.Codecs()) == 0 {
		t.Skip("built without cgo: no libvpx")
	}
	bin := build(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			s := signalingtest.Start(t, signalingtest.Options{})
			s.Register(t, "rec", "correct horse battery")
			tok, _, err := s.Keys().IssueAccess(auth.Claims{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"lab"}}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			tokFile := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			cmd := exec.Command(bin, "--server", s.URL, "--token-file", tokFile, "--room", "lab", "--out", dir,
				"--fps", "-1", "--clip-frames", "30", "--size", "64x48", "--no-sync")
			cmd.Stderr = &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			var waitErr error
			go func() { waitErr = cmd.Wait(); close(exited) }()
			defer func() {
				cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("recorder log:\n%s", logs.String())
				}
			}()
			streamToRecorder(t, s)
			// Wait until one clip is complete and the next is being written.
			waitFor(t, func() bool { return len(manifest(t, dir)) >= 1 && len(partials(dir)) == 1 })
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-exited:
				if sig == syscall.SIGTERM && waitErr != nil {
					t.Fatalf("after SIGTERM: %v", waitErr)
				}
			case <-time.After(timeout):
				t.Fatal("recorder did not exit")
			}
			shards := checkDir(t, dir)
			if sig == syscall.SIGTERM {
				if len(partials(dir)) != 0 {
					t.Errorf("partial files after a clean stop: %v", partials(dir))
				}
				// The clip being written was finished, short.
				if last := shards[len(shards)-1]; last.Frames < 1 || last.Frames >= 30 {
					t.Errorf("last shard has %d frames, want a finished short clip", last.Frames)
				}
				return
			}
			// The next run removes what the killed one left half-written.
			out, err := recorder.OpenOutput(recorder.OutputConfig{Dir: dir, Room: "lab", Size: recorder.Size{W: 64, H: 48}, ClipFrames: 30})
			if err != nil {
				t.Fatal(err)
			}
			out.Close()
			if p := partials(dir); len(p) != 0 {
				t.Errorf("partial files left after a restart: %v", p)
			}
		})
	}
}

// streamToRecorder signs alice in, waits for the recorder in the room and
// sends it the endless test pattern with consent.
func streamToRecorder(t *testing.T, s *signalingtest.Server) {
	t.Helper()
	s.Register(t, "alice", "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	c, err := client.Dial(ctx, s.URL, client.Credentials{Username: "alice", Password: "correct horse battery"}, client.WithSettingEngine(se))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	room, err := c.Join(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	var rec string
	for rec == "" {
		select {
		case ev := <-room.Events():
			if pc, ok := ev.(*client.PeerConnected); ok && pc.Member.Role == proto.RoleRecorder {
				rec = pc.Member.Peer
			}
		case <-ctx.Done():
			t.Fatal("the recorder never connected")
		}
	}
	src, err := media.NewTestPattern(media.PatternConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	pub, err := room.PublishVideo(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	if err := pub.SendTo(rec, client.ConsentToRecording()); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond: the files appear in real time, with no event to wait on.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func partials(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, ".*.partial"))
	return m
}

func manifest(t *testing.T, dir string) []recorder.Shard {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "manifest.jsonl"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []recorder.Shard
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s recorder.Shard
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			// A line being appended is not complete yet.
			continue
		}
		out = append(out, s)
	}
	return out
}

// checkDir checks that every visible file in dir is complete: each shard
// reads as a tar of a whole .npy frame array, timestamps and metadata, with
// the checksum the manifest lists; each sheet decodes as PNG.
func checkDir(t *testing.T, dir string) []recorder.Shard {
	t.Helper()
	shards := manifest(t, dir)
	byName := map[string]recorder.Shard{}
	for _, s := range shards {
		byName[s.File] = s
	}
	ents, _ := os.ReadDir(dir)
	tars := 0
	for _, e := range ents {
		name, path := e.Name(), filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(name, "."):
			continue // partial files: hidden, not shards
		case strings.HasSuffix(name, ".tar"):
			tars++
			sh, ok := byName[name]
			if !ok || sh.CRC32 != fmt.Sprintf("%08x", crc32.ChecksumIEEE(b)) {
				t.Errorf("%s: not in the manifest with its checksum", name)
			}
			if n := tarFrames(t, name, b); n != sh.Frames {
				t.Errorf("%s: %d frames, manifest says %d", name, n, sh.Frames)
			}
		case strings.HasSuffix(name, ".png"):
			if _, err := png.Decode(bytes.NewReader(b)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case name == "manifest.jsonl" || name == "lab-chat.jsonl" || name == "lab-consent.jsonl":
		default:
			t.Errorf("unexpected file %s", name)
		}
	}
	if tars != len(shards) || tars == 0 {
		t.Errorf("%d shards on disk, %d in the manifest", tars, len(shards))
	}
	return shards
}

// tarFrames reads a shard and returns the frame count of its complete
// .npy frame array, failing on anything truncated.
func tarFrames(t *testing.T, name string, b []byte) int {
	tr := tar.NewReader(bytes.NewReader(b))
	frames, members := -1, 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		members++
		if strings.HasSuffix(h.Name, ".frames.npy") {
			hl := int(binary.LittleEndian.Uint16(data[8:]))
			header := string(data[10 : 10+hl])
			var n int
			if _, err := fmtSscan(header, &n); err != nil {
				t.Fatalf("%s: header %q: %v", name, header, err)
			}
			if len(data) != 10+hl+n*48*64*3 {
				t.Fatalf("%s: %d bytes for %d frames", name, len(data), n)
			}
			frames = n
		}
	}
	if members != 3 {
		t.Errorf("%s: %d members, want 3", name, members)
	}
	return frames
}

// fmtSscan reads the first dimension from a .npy header's shape tuple.
func fmtSscan(header string, n *int) (int, error) {
	_, rest, ok := strings.Cut(header, "'shape': (")
	if !ok {
		return 0, io.ErrUnexpectedEOF
	}
	first, _, _ := strings.Cut(rest, ",")
	v, err := strconv.Atoi(strings.TrimSpace(first))
	*n = v
	return 1, err
}
