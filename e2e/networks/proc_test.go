package networks_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/netlab"
)

// waitTimeout bounds every wait on a process; a passing test never waits
// for it.
const waitTimeout = 60 * time.Second

var (
	buildOnce sync.Once
	binDir    string
	buildErr  string
)

// TestMain removes the binaries the tests built (about 55 MB a run).
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary returns the path of a khadga binary (khadga, khadga-peer,
// khadga-recorder), built once per test binary: the server as the
// Dockerfile builds it (CGO_ENABLED=0), the peers with cgo for libvpx.
func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "khadga-lab-bin")
		if err != nil {
			buildErr = err.Error()
			return
		}
		binDir = dir
		var wg sync.WaitGroup
		var mu sync.Mutex
		for bin, cgo := range map[string]string{"khadga": "0", "khadga-peer": "1", "khadga-recorder": "1"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, goTool(), "build", "-o", filepath.Join(dir, bin), "github.com/khadga/khadga/cmd/"+bin)
				cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
				if out, err := cmd.CombinedOutput(); err != nil {
					mu.Lock()
					buildErr += "building " + bin + ": " + err.Error() + "\n" + string(out)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// proc is a program running in a namespace, whose output lines the test
// waits on.
type proc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	err   error

	mu    sync.Mutex
	lines []string
	seen  chan struct{} // closed and replaced on each new line
}

// start runs prog in ns, stopping it (SIGTERM, then SIGKILL) when the
// test ends. Its stdout and stderr both feed lines. If the test binary
// dies first, the kernel kills it (Pdeathsig).
func start(t *testing.T, ns *netlab.Netns, name string, env []string, prog string, args ...string) *proc {
	t.Helper()
	cmd := ns.Command(context.Background(), prog, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	// ip netns exec execs prog, which keeps the signal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{t: t, name: name, cmd: cmd, done: make(chan struct{}), seen: make(chan struct{})}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	read := make(chan struct{})
	started := make(chan error, 1)
	// Pdeathsig comes when the thread that started the process exits, not
	// the process (go.dev/issue/27505), and Go ends a thread whose
	// goroutine exits locked to it. So the process is started, and waited
	// for, by one goroutine that keeps its thread as long as the process
	// runs, as chromedp starts the browser.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err != nil {
			return
		}
		p.err = cmd.Wait()
		pw.Close()
		<-read // every line is in before done
		close(p.done)
	}()
	if err := <-started; err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.read(pr); close(read) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		close(p.seen)
		p.seen = make(chan struct{})
		p.mu.Unlock()
	}
}

// stop ends the process: SIGTERM; if it has not exited 10 s later,
// SIGQUIT, which has a Go program print every goroutine's stack (into its
// output, which a failing test shows) and exit; SIGKILL 5 s after that.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if p.exitsWithin(10 * time.Second) {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	if p.exitsWithin(5 * time.Second) {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// exitsWithin reports whether the process exits within d.
func (p *proc) exitsWithin(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		p.t.Fatalf("%s did not exit within %v:\n%s", p.name, waitTimeout, p.output())
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatalf("%s: %v", p.name, p.err)
	return -1
}

// say writes a line to the process's standard input.
func (p *proc) say(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("%s: write %q: %v", p.name, line, err)
	}
}

// waitLine waits for an output line matching re (from the start of the
// output) and returns its submatches.
func (p *proc) waitLine(re string) []string {
	p.t.Helper()
	return p.waitLineFor(re, waitTimeout)
}

func (p *proc) waitLineFor(re string, timeout time.Duration) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(timeout)
	for i := 0; ; {
		p.mu.Lock()
		for ; i < len(p.lines); i++ {
			if m := rx.FindStringSubmatch(p.lines[i]); m != nil {
				p.mu.Unlock()
				return m
			}
		}
		seen := p.seen
		p.mu.Unlock()
		select {
		case <-seen:
		case <-p.done:
			p.mu.Lock()
			rest := len(p.lines) > i
			p.mu.Unlock()
			if !rest {
				p.t.Fatalf("%s exited (%v) before printing a line like %q:\n%s", p.name, p.err, re, p.output())
			}
		case <-deadline:
			p.t.Fatalf("%s printed no line like %q within %v:\n%s", p.name, re, timeout, p.output())
		}
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}
