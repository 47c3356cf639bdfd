// Package khadga_test runs the README's commands as written.
package khadga_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/khadga/khadga/client"
)

// readmeBlock is one ```sh block of README.md and the heading it is under.
type readmeBlock struct {
	heading string
	lines   []string
}

// readmeBlocks returns the sh blocks of the README's "## Run it" section.
func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	heading, inSection, inBlock := "", false, false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case inBlock && line == "```":
			inBlock = false
		case inBlock:
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				blocks[len(blocks)-1].lines = append(blocks[len(blocks)-1].lines, l)
			}
		case strings.HasPrefix(line, "## "):
			inSection, heading = line == "## Run it", line
		case strings.HasPrefix(line, "### "):
			heading = line
		case inSection && line == "```sh":
			inBlock = true
			blocks = append(blocks, readmeBlock{heading: heading})
		}
	}
	if len(blocks) < 4 {
		t.Fatalf("found %d sh blocks under \"## Run it\" in README.md; has it been reorganized?", len(blocks))
	}
	return blocks
}

// newcomer is a fresh machine with only Go: a copy of the repository, a
// PATH with go and a shell but no C compiler (so Go builds without cgo, as
// it does where gcc is not installed), and its own HOME and GOBIN.
type newcomer struct {
	t     *testing.T
	dir   string // the copy of the repository, where commands run
	gobin string
	bash  string // the shell on the newcomer's PATH
	env   []string
}

func newNewcomer(t *testing.T) *newcomer {
	root := machineDir(t)
	n := &newcomer{t: t, dir: filepath.Join(root, "khadga"), gobin: filepath.Join(root, "gobin")}
	copyRepository(t, n.dir)
	bin := filepath.Join(root, "bin")
	n.bash = filepath.Join(bin, "bash")
	home := filepath.Join(root, "home")
	for _, d := range []string{bin, home, n.gobin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"go": goBin, "bash": bash} {
		if err := os.Symlink(target, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	goenv := func(name string) string {
		out, err := exec.Command(goBin, "env", name).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	n.env = []string{
		"PATH=" + bin + ":" + n.gobin,
		"HOME=" + home,
		"TMPDIR=" + os.TempDir(),
		// The module and build caches of this machine stand in for the
		// downloads a fresh one would make; nothing is fetched.
		"GOCACHE=" + goenv("GOCACHE"), "GOMODCACHE=" + goenv("GOMODCACHE"), "GOPATH=" + goenv("GOPATH"),
		"GOBIN=" + n.gobin, "GOPROXY=off", "GOTOOLCHAIN=local", "GOFLAGS=",
		// The documented environment twins of --http and the TURN
		// listeners: port 0 lets parallel runs coexist with a real server
		// on 8080 and 3478.
		"KHADGA_HTTP=127.0.0.1:0", "KHADGA_TURN_LISTEN=127.0.0.1:0", "KHADGA_TURN_TLS_LISTEN=127.0.0.1:0",
	}
	return n
}

// machineDir is the newcomer's directory, emptied for this run. Its path
// depends only on this checkout's, so that the build cache, which keys
// compiled packages by their directory, serves the next run too; a lock
// keeps two runs from one checkout apart.
func machineDir(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(wd))
	root := filepath.Join(os.TempDir(), "khadga-readme-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(root+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	clean := func() {
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
	clean()
	t.Cleanup(func() { clean(); lock.Close() })
	return root
}

// copyRepository copies the files git would put in a clone (tracked and
// new, not ignored ones), as they are in the working tree.
func copyRepository(t *testing.T, dst string) {
	out, err := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		fi, err := os.Lstat(f)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the working tree, or not a plain file
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs line with bash in the copy, with stdin, and returns its
// combined output; it fails the test unless line exits 0.
func (n *newcomer) run(ctx context.Context, line, stdin string, extraEnv ...string) string {
	n.t.Helper()
	cmd := exec.CommandContext(ctx, n.bash, "-c", line)
	cmd.Dir, cmd.Env, cmd.Stdin = n.dir, append(n.env, extraEnv...), strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		n.t.Fatalf("README command %q: %v\n%s", line, err, out)
	}
	shown := strings.SplitAfterN(string(out), "\n", 4)
	n.t.Logf("$ %s\n%s", line, strings.Join(shown[:min(len(shown), 3)], ""))
	return string(out)
}

// server is the README's long-running command.
type server struct {
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan error
}

var runningRE = regexp.MustCompile(`khadga is running"? url=(http://\S+)`)

// start runs line in its own process group (go run and the program it
// starts) until the test stops it, and waits for the server's URL.
func (n *newcomer) start(line string) *server {
	n.t.Helper()
	cmd := exec.Command(n.bash, "-c", line)
	cmd.Dir, cmd.Env = n.dir, n.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StderrPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	s := &server{cmd: cmd, done: make(chan error, 1)}
	n.t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.mu.Lock()
			s.logs.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := runningRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		s.done <- cmd.Wait()
	}()
	select {
	case s.url = <-found:
	case err := <-s.done:
		n.t.Fatalf("README command %q exited: %v\n%s", line, err, s.log())
	case <-time.After(5 * time.Minute): // go run compiles first
		n.t.Fatalf("README command %q did not log the server's URL:\n%s", line, s.log())
	}
	return s
}

func (s *server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// stop presses Ctrl-C (SIGINT to the process group, as a terminal sends
// it) and waits for the server to shut down without an error logged. go
// run itself exits 1 after an interrupt whatever its program did, so its
// exit status says nothing.
func (s *server) stop(t *testing.T) {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		t.Fatalf("server still running a minute after Ctrl-C:\n%s", s.log())
	}
	if log := s.log(); !strings.Contains(log, "shutting down") || strings.Contains(log, "level=ERROR") {
		t.Fatalf("server did not shut down cleanly after Ctrl-C:\n%s", log)
	}
}

const readmePassword = "a password from the README test"

// TestReadmeCommands runs the commands of the README's "Run it" section as
// written, in order, on a newcomer's machine (see newcomer): the server
// with go run, khadga-peer register and chat, go install and go build -o,
// user add, token and backup against the running server. The production
// examples, which need a public name and root, are checked for flags that
// exist; the no-cgo khadga-peer names the same packages as the README when
// asked for video.
func TestReadmeCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds khadga and khadga-peer from a copy of the repository")
	}
	n := newNewcomer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var srv *server
	var aptLine string
	for _, b := range readmeBlocks(t) {
		for _, line := range b.lines {
			switch {
			case strings.Contains(b.heading, "In production"):
				n.checkFlags(ctx, line)
			case strings.Contains(b.heading, "Video"):
				aptLine = line
			case line == "go run ./cmd/khadga":
				srv = n.start(line)
				n.env = append(n.env, "KHADGA_SERVER="+srv.url)
			default:
				if srv == nil {
					t.Fatalf("README command %q comes before the server is started", line)
				}
				n.runChecked(ctx, srv, line)
			}
		}
	}
	if srv == nil {
		t.Fatal("README's Run it section never starts the server with `go run ./cmd/khadga`")
	}
	n.checkVideoHint(ctx, aptLine)
	srv.stop(t)
	// Stopped, the admin commands open the store file: it holds both accounts.
	if out := n.run(ctx, "khadga user list", ""); !strings.Contains(out, "alice") || !strings.Contains(out, "bob") {
		t.Fatalf("after the server stopped, the store lacks the accounts:\n%s", out)
	}
}

// runChecked runs one README command with the input a person would type,
// and checks that it did what the README says.
func (n *newcomer) runChecked(ctx context.Context, srv *server, line string) {
	t := n.t
	t.Helper()
	words := strings.Fields(strings.Replace(line, "go run ./cmd/khadga-peer", "khadga-peer", 1))
	is := func(prefix ...string) bool {
		return len(words) >= len(prefix) && strings.Join(words[:len(prefix)], " ") == strings.Join(prefix, " ")
	}
	switch {
	case is("khadga-peer", "register"):
		out := n.run(ctx, line, readmePassword+"\n")
		if !strings.Contains(out, "registered and signed in as") {
			t.Fatalf("%q did not sign in:\n%s", line, out)
		}
	case is("khadga-peer", "chat"):
		out := n.run(ctx, line, "hello from the README\n/quit\n")
		if !strings.Contains(out, "* joined "+words[2]+" as") {
			t.Fatalf("%q did not join:\n%s", line, out)
		}
	case is("go", "install"):
		n.run(ctx, line, "")
		for _, w := range words[2:] {
			if _, err := os.Stat(filepath.Join(n.gobin, filepath.Base(w))); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
		}
	case is("go", "build", "-o"):
		n.run(ctx, line, "")
		if _, err := os.Stat(filepath.Join(n.dir, words[3])); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	case is("khadga", "user", "add"):
		n.run(ctx, line, readmePassword+"\n")
		hc := &http.Client{Timeout: 30 * time.Second}
		if _, err := client.Login(ctx, hc, srv.url, words[3], readmePassword, ""); err != nil {
			t.Fatalf("after %q, %s cannot log in: %v", line, words[3], err)
		}
	case is("khadga", "token", "list"):
		if out := n.run(ctx, line, ""); !strings.Contains(out, "rec") || !strings.Contains(out, "active") {
			t.Fatalf("%q does not list the recorder's token:\n%s", line, out)
		}
	case is("khadga", "token") && strings.Contains(line, "--refresh >"):
		n.run(ctx, line, "")
		tok, err := os.ReadFile(filepath.Join(n.dir, words[len(words)-1]))
		if err != nil || !strings.HasPrefix(string(tok), client.BotRefreshPrefix) {
			t.Fatalf("%q wrote %q: %v", line, tok, err)
		}
		hc := &http.Client{Timeout: 30 * time.Second}
		if _, err := client.Refresh(ctx, hc, srv.url, strings.TrimSpace(string(tok))); err != nil {
			t.Fatalf("the token %q wrote buys no access token: %v", line, err)
		}
	case is("khadga", "token"):
		out := n.run(ctx, line, "")
		if first := strings.SplitN(strings.TrimSpace(out), "\n", 2)[0]; strings.Count(first, ".") != 2 {
			t.Fatalf("%q printed no token:\n%s", line, out)
		}
	case is("khadga", "keys", "rotate"):
		kid := strings.TrimSpace(n.run(ctx, line, ""))
		if out := n.run(ctx, "khadga keys list", ""); !strings.Contains(out, kid+" ") || !strings.Contains(out, "signing") || !strings.Contains(out, "verifying until") {
			t.Fatalf("after %q (kid %q), keys list:\n%s", line, kid, out)
		}
	case is("khadga", "backup"):
		n.run(ctx, line, "")
		if fi, err := os.Stat(filepath.Join(n.dir, words[2])); err != nil || fi.Size() == 0 {
			t.Fatalf("%q: no backup file: %v", line, err)
		}
	default:
		t.Fatalf("README command %q: this test does not know what it should do; teach runChecked", line)
	}
}

// checkFlags checks that a production example's khadga command exists and
// takes those flags (adding --help, so that nothing starts); other lines
// (sudo setcap) are left to the reader.
func (n *newcomer) checkFlags(ctx context.Context, line string) {
	if !strings.HasPrefix(line, "khadga ") {
		return
	}
	n.run(ctx, line+" --help", "", "SECRET=a-secret-of-at-least-16-bytes")
}

// checkVideoHint asks the no-cgo khadga-peer for video and wants the
// packages of the README's apt-get line in its answer.
func (n *newcomer) checkVideoHint(ctx context.Context, aptLine string) {
	t := n.t
	if !strings.Contains(aptLine, "apt-get install") {
		t.Fatalf("no apt-get line under the README's video heading (got %q)", aptLine)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(n.gobin, "khadga-peer"), "video", "--room", "lobby", "--pattern", "--to", "bob")
	cmd.Dir, cmd.Env = n.dir, n.env
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("khadga-peer video --pattern without cgo succeeded:\n%s", out)
	}
	pkgs := strings.TrimSpace(aptLine[strings.Index(aptLine, "install")+len("install"):])
	if !strings.Contains(string(out), "apt-get install "+pkgs) {
		t.Fatalf("khadga-peer video --pattern without cgo does not name the README's packages %q:\n%s", pkgs, out)
	}
}
