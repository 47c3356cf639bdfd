package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestMain lets the test binary act as khadga-peer, so the tests run it
// as a real process without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("KHADGA_PEER_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

const password = "correct horse battery"

// peerCmd runs khadga-peer with args, config dir dir, and stdin.
func peerCmd(ctx context.Context, t *testing.T, dir, stdin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "KHADGA_PEER_AS_MAIN=1", "KHADGA_PEER_CONFIG="+dir, "KHADGA_USER=", "KHADGA_PASSWORD=")
	cmd.Stdin = strings.NewReader(stdin)
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return -1
}

func login(ctx context.Context, t *testing.T, s *signalingtest.Server, user string) string {
	t.Helper()
	s.Register(t, user, password)
	dir := t.TempDir()
	out, err := peerCmd(ctx, t, dir, password+"\n", "login", "--server", s.URL, "--user", user).CombinedOutput()
	if err != nil {
		t.Fatalf("login %s: %v\n%s", user, err, out)
	}
	fi, err := os.Stat(filepath.Join(dir, storeFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("tokens file mode %v, want 0600", fi.Mode().Perm())
	}
	return dir
}

func TestSendRecvProcesses(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice, bob := login(ctx, t, s, "alice"), login(ctx, t, s, "bob")

	data := make([]byte, 3<<20+17)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "photo.raw")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	inbox := t.TempDir()
	var recvOut, recvErr bytes.Buffer
	recv := peerCmd(ctx, t, bob, "", "recv", "--room", "drop", "--dir", inbox, "--from", "alice", "--loopback", "--timeout", "60s")
	recv.Stdout, recv.Stderr = &recvOut, &recvErr
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	sendOut, serr := peerCmd(ctx, t, alice, "", "send", src, "--room", "drop", "--to", "bob", "--loopback", "--timeout", "60s").CombinedOutput()
	if code := exitCode(t, serr); code != exitOK {
		t.Fatalf("send exited %d:\n%s", code, sendOut)
	}
	if code := exitCode(t, recv.Wait()); code != exitOK {
		t.Fatalf("recv exited %d:\n%s\n%s", code, recvOut.String(), recvErr.String())
	}
	got, err := os.ReadFile(filepath.Join(inbox, "photo.raw"))
	if err != nil {
		t.Fatalf("received file: %v\n%s", err, recvOut.String())
	}
	if !bytes.Equal(got, data) {
		t.Fatal("received file differs")
	}
	if !strings.Contains(recvOut.String(), "received") || !strings.Contains(string(sendOut), "sent photo.raw") {
		t.Fatalf("outputs:\n%s\n%s", recvOut.String(), sendOut)
	}
	leftovers, _ := filepath.Glob(filepath.Join(inbox, ".khadga-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

func TestExitCodes(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := login(ctx, t, s, "alice")
	src := filepath.Join(t.TempDir(), "f.txt")
	if err := os.WriteFile(src, []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := s.URL + "/#room=club&invite=" + s.ClaimRoom(t, s.User(t, "carol").AccessToken, "club")
	cases := []struct {
		name string
		dir  string
		args []string
		want int
		says string
	}{
		{"no args", alice, nil, exitUsage, ""},
		{"unknown command", alice, []string{"dance"}, exitUsage, ""},
		{"help", alice, []string{"send", "--help"}, exitOK, ""},
		{"missing flags", alice, []string{"send", src}, exitUsage, ""},
		{"not signed in", t.TempDir(), []string{"send", src, "--room", "r", "--to", "bob"}, exitAuth, ""},
		{"peer never comes", alice, []string{"send", src, "--room", "r", "--to", "nobody", "--timeout", "2s"}, exitPeer, ""},
		{"bad room", alice, []string{"recv", "--room", "no/slash", "--timeout", "5s"}, exitUsage, `room "no/slash": room name may contain only`},
		{"room needs an invite", alice, []string{"recv", "--room", "club", "--timeout", "5s"}, exitConnect, "room club needs an invite"},
		{"wrong invite", alice, []string{"recv", "--room", "club", "--invite", "WrongWrongWrong", "--timeout", "5s"}, exitConnect, "not valid for room club"},
		// Joined with the link; then nobody comes.
		{"invite link", alice, []string{"send", src, "--room", "club", "--to", "nobody", "--invite", link, "--timeout", "2s"}, exitPeer, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := peerCmd(ctx, t, tc.dir, "", tc.args...).CombinedOutput()
			if code := exitCode(t, err); code != tc.want || !strings.Contains(string(out), tc.says) {
				t.Fatalf("exit %d, want %d saying %q:\n%s", code, tc.want, tc.says, out)
			}
		})
	}
	// Every command documents itself with an example.
	for _, c := range commands {
		out, _ := peerCmd(ctx, t, alice, "", c.name, "--help").CombinedOutput()
		if !strings.Contains(string(out), "Example:") || !strings.Contains(string(out), "khadga-peer "+c.name) {
			t.Errorf("%s --help has no example:\n%s", c.name, out)
		}
	}
	// logout revokes the refresh token and deletes the file.
	if out, err := peerCmd(ctx, t, alice, "", "logout").CombinedOutput(); err != nil {
		t.Fatalf("logout: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(alice, storeFile)); !os.IsNotExist(err) {
		t.Fatalf("tokens file still there: %v", err)
	}
}

// lineReader delivers a process's output lines on a channel.
func lineReader(t *testing.T, r io.Reader) <-chan string {
	ch := make(chan string, 256)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitLine waits for a line containing want.
func waitLine(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("output ended before %q", want)
			}
			if strings.Contains(l, want) {
				return
			}
		case <-timer.C:
			t.Fatalf("no line with %q", want)
		}
	}
}

// startChat starts khadga-peer chat with args, config dir dir, and
// returns its stdin and its stdout's lines.
func startChat(ctx context.Context, t *testing.T, dir string, args ...string) (*exec.Cmd, io.WriteCloser, <-chan string) {
	t.Helper()
	cmd := peerCmd(ctx, t, dir, "", append([]string{"chat"}, args...)...)
	cmd.Stdin = nil
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, in, lineReader(t, out)
}

func TestChatProcesses(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dirs := map[string]string{"alice": login(ctx, t, s, "alice"), "bob": login(ctx, t, s, "bob")}
	type proc struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out <-chan string
	}
	procs := map[string]*proc{}
	for _, u := range []string{"alice", "bob"} {
		cmd, in, out := startChat(ctx, t, dirs[u], "lounge", "--loopback")
		procs[u] = &proc{cmd: cmd, in: in, out: out}
	}
	waitLine(t, procs["alice"].out, "connected to bob")
	waitLine(t, procs["bob"].out, "connected to alice")
	io.WriteString(procs["alice"].in, "hello bob\n")
	waitLine(t, procs["bob"].out, "alice: hello bob")
	io.WriteString(procs["bob"].in, "/who\n")
	waitLine(t, procs["bob"].out, "peer ") // a /who line: "alice user peer ID connected host"
	io.WriteString(procs["bob"].in, "hi alice\n")
	waitLine(t, procs["alice"].out, "bob: hi alice")
	for u, p := range procs {
		io.WriteString(p.in, "/quit\n")
		if code := exitCode(t, p.cmd.Wait()); code != exitOK {
			t.Fatalf("%s's chat exited %d", u, code)
		}
	}
}
