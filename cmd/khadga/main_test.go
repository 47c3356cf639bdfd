package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// khadgaBin is the binary under test, built once by TestMain without cgo,
// as it ships.
var khadgaBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "khadga-bin-")
	if err != nil {
		panic(err)
	}
	khadgaBin = filepath.Join(dir, "khadga")
	build := exec.Command("go", "build", "-o", khadgaBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building khadga: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running khadga serve.
type process struct {
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan error
}

// syncBuffer is the process's stderr, written by the reading goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) WriteString(x string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(x)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var urlRE = regexp.MustCompile(`url=(https?://\S+)`)

// startServe runs `khadga` with no flags in dir. Only the listen addresses
// come from the environment, so parallel tests and CI never collide on
// 8080 and 3478; everything else is the zero-config default.
func startServe(t *testing.T, dir string, extraEnv ...string) *process {
	t.Helper()
	return startServeUntil(t, dir, "khadga is running", extraEnv...)
}

// startServeUntil is startServe that returns once khadga logs a line
// holding until (p.url is set if that line has the URL).
func startServeUntil(t *testing.T, dir, until string, extraEnv ...string) *process {
	t.Helper()
	cmd := exec.Command(khadgaBin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KHADGA_HTTP=127.0.0.1:0", "KHADGA_TURN_LISTEN=127.0.0.1:0", "KHADGA_TURN_TLS_LISTEN=127.0.0.1:0")
	cmd.Env = append(cmd.Env, extraEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, logs: new(syncBuffer), done: make(chan error, 1)}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.WriteString(line + "\n")
			if strings.Contains(line, until) {
				var url string
				if m := urlRE.FindStringSubmatch(line); m != nil {
					url = m[1]
				}
				select {
				case found <- url:
				default: // found already
				}
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
	})
	select {
	case p.url = <-found:
	case err := <-p.done:
		t.Fatalf("khadga exited: %v\n%s", err, p.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("khadga did not log %q:\n%s", until, p.logs)
	}
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("khadga exited with %v after SIGTERM:\n%s", err, p.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("khadga did not stop after SIGTERM:\n%s", p.logs)
	}
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	code, b, err := tryPost(url, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, b
}

// tryPost is post for goroutines other than the test's.
func tryPost(url, body string) (int, string, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func run(t *testing.T, dir string, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(khadgaBin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestZeroConfigServeAndRestart(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir)
	creds := `{"username":"alice","password":"correct horse battery"}`
	if code, body := post(t, p.url+"/api/register", creds); code != 201 {
		t.Fatalf("register: %d %s", code, body)
	}
	fi, err := os.Stat(filepath.Join(dir, "khadga-data", "khadga.db"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store: %v mode %v, want khadga-data/khadga.db with 0600", err, fi.Mode())
	}
	p.stop(t)

	p = startServe(t, dir)
	code, body := post(t, p.url+"/api/login", creds)
	if code != 200 {
		t.Fatalf("login after restart: %d %s", code, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal([]byte(body), &tok)
	if tok.AccessToken == "" || strings.Contains(p.logs.String(), tok.AccessToken) {
		t.Fatal("no token, or the token was logged")
	}
	p.stop(t)
}

func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir)
	// While the server runs, the commands go through its admin socket.
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root", "--role", "admin"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	if code, body := post(t, p.url+"/api/login", `{"username":"root","password":"a long admin password"}`); code != 200 {
		t.Fatalf("login of the added user: %d %s", code, body)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	if out, err := run(t, dir, "", "backup", backup); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	// backup - writes to standard output, for kubectl exec.
	streamed := filepath.Join(t.TempDir(), "streamed.db")
	f, _ := os.Create(streamed)
	cmd := exec.Command(khadgaBin, "backup", "-")
	cmd.Dir, cmd.Stdout = dir, f
	if err := cmd.Run(); err != nil {
		t.Fatalf("backup -: %v", err)
	}
	f.Close()
	if info, err := store.Check(streamed); err != nil || info.Users != 1 {
		t.Fatalf("streamed backup: %+v %v", info, err)
	}
	out, err := run(t, dir, "", "token", "--user", "rec", "--role", "recorder", "--room", "lab", "--ttl", "1h")
	if err != nil || strings.Count(strings.TrimSpace(strings.Split(out, "\n")[0]), ".") != 2 {
		t.Fatalf("token: %v\n%s", err, out)
	}
	p.stop(t)

	// Stopped: the commands open the file directly.
	if out, err := run(t, dir, "", "user", "delete", "root"); err != nil {
		t.Fatalf("user delete: %v\n%s", err, out)
	}
	if out, _ := run(t, dir, "", "user", "list"); strings.Contains(out, "root") {
		t.Fatalf("root still listed after delete:\n%s", out)
	}
	if out, err := run(t, dir, "", "restore", backup); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if out, _ := run(t, dir, "", "user", "list"); !strings.Contains(out, "root") {
		t.Fatalf("root missing after restore:\n%s", out)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.db")
	os.WriteFile(garbage, bytes.Repeat([]byte{7}, 8192), 0o600)
	if out, err := run(t, dir, "", "restore", garbage); err == nil || !strings.Contains(out, "nothing was changed") {
		t.Fatalf("restore of garbage: %v\n%s", err, out)
	}
	if out, _ := run(t, dir, "", "user", "list"); !strings.Contains(out, "root") {
		t.Fatalf("a refused restore changed the store:\n%s", out)
	}
}

// TestRestoreFromStdin: restore - reads the backup from standard input
// (docker compose run -T ... restore - < backup.db, which needs no copy
// into the container) and checks it as it checks a file: a good one
// replaces the store, garbage changes nothing, and neither leaves a
// temporary file in the data directory.
func TestRestoreFromStdin(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root", "--role", "admin"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	if out, err := run(t, dir, "", "backup", backup); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if out, err := run(t, dir, "", "user", "delete", "root"); err != nil {
		t.Fatalf("user delete: %v\n%s", err, out)
	}
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, dir, string(b), "restore", "-"); err != nil || !strings.Contains(out, "from standard input") {
		t.Fatalf("restore -: %v\n%s", err, out)
	}
	if out, _ := run(t, dir, "", "user", "list"); !strings.Contains(out, "root") {
		t.Fatalf("root missing after restore -:\n%s", out)
	}
	garbage := string(bytes.Repeat([]byte{7}, 8192))
	if out, err := run(t, dir, garbage, "restore", "-"); err == nil || !strings.Contains(out, "not usable") ||
		!strings.Contains(out, "nothing was changed") {
		t.Fatalf("restore - of garbage: %v\n%s", err, out)
	}
	if out, _ := run(t, dir, "", "user", "list"); !strings.Contains(out, "root") {
		t.Fatalf("a refused restore - changed the store:\n%s", out)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "khadga-data", ".khadga-restore-*"))
	if len(left) > 0 {
		t.Errorf("restore - left %v in the data directory", left)
	}
}

// TestRestoreOverDamagedStore: khadga restore replaces a damaged store
// (the usual reason to restore) and keeps it beside the restored one. It
// used to open the live store to take its lock and fail there ("invalid
// database"), so the backup could not be restored until the operator
// deleted the store by hand; and the store it replaced was gone for good.
func TestRestoreOverDamagedStore(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root", "--role", "admin"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	if out, err := run(t, dir, "", "backup", backup); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	live := filepath.Join(dir, "khadga-data", "khadga.db")
	damage := bytes.Repeat([]byte("damaged "), 4096)
	if err := os.WriteFile(live, damage, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, dir, "", "user", "list"); err == nil || !strings.Contains(out, "khadga restore") {
		t.Fatalf("user list on a damaged store: %v\n%s; want the advice to restore", err, out)
	}
	out, err := run(t, dir, "", "restore", backup)
	if err != nil || !strings.Contains(out, "kept as") {
		t.Fatalf("restore over a damaged store: %v\n%s", err, out)
	}
	if out, _ := run(t, dir, "", "user", "list"); !strings.Contains(out, "root") {
		t.Fatalf("root missing after restore:\n%s", out)
	}
	kept, _ := filepath.Glob(live + ".replaced-*")
	if len(kept) != 1 {
		t.Fatalf("replaced stores kept: %v, want one", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.Equal(b, damage) {
		t.Errorf("%s does not hold the replaced store", kept[0])
	}
}

// TestRestoreUnreadableBackup: a backup the command may not read is
// reported as unreadable, not as a bad backup. (khadga backup writes 0600,
// so a file copied into a container as root is unreadable for the
// server's user; "not usable" sent operators after a corrupt file.)
func TestRestoreUnreadableBackup(t *testing.T) {
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(backup, []byte("never read"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(khadgaBin, "restore", backup)
	cmd.Dir = dir
	if os.Getuid() == 0 {
		// Root reads every file: run as nobody, who may reach the file
		// (and the binary) but not read it.
		for _, d := range []string{filepath.Dir(khadgaBin), dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	} else if err := os.Chmod(backup, 0); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot read the backup") || !strings.Contains(string(out), "permission denied") ||
		strings.Contains(string(out), "not usable") {
		t.Fatalf("restore of an unreadable file: %v\n%s; want \"cannot read the backup\" naming the permission", err, out)
	}
}

// khadga serve runs the garbage collector at serverGCPercent with
// serverGCFloor's headroom unless GOGC says otherwise; /metrics (open to
// loopback) shows the percent in effect. A fresh server's heap is a few MiB,
// so the floor raises the percent, up to where the runtime's own minimum
// goal (4 MiB at 100%) reaches the floor.
func TestServeGCPercent(t *testing.T) {
	t.Setenv("GOGC", "") // restored after the test; unset for the first run
	os.Unsetenv("GOGC")
	most := serverGCFloor * 100 / (4 << 20)
	for _, c := range []struct {
		env         []string
		least, most int
	}{{nil, serverGCPercent + 1, most}, {[]string{"GOGC=100"}, 100, 100}} {
		p := startServe(t, t.TempDir(), c.env...)
		resp, err := http.Get(p.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`(?m)^go_gc_gogc_percent (\d+)$`).FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("env %v: /metrics lacks go_gc_gogc_percent", c.env)
		}
		if n, _ := strconv.Atoi(m[1]); n < c.least || n > c.most {
			t.Errorf("env %v: go_gc_gogc_percent %d, want %d to %d", c.env, n, c.least, c.most)
		}
		p.stop(t)
	}
}

// TestServeRefusesAStoreItCannotOpen: a store that does not open (damaged,
// or held by another server on the same data directory) stops `khadga
// serve` with the store's error and exit status 1. It used to panic: the
// failed open left a nil *store.Store in the held store.Backend, which the
// clean-up then closed.
func TestServeRefusesAStoreItCannotOpen(t *testing.T) {
	damaged := t.TempDir()
	if err := os.MkdirAll(filepath.Join(damaged, "khadga-data"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := os.WriteFile(filepath.Join(damaged, "khadga-data", "khadga.db"), bytes.Repeat([]byte("damaged "), 4096), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	inUse := t.TempDir()
	startServe(t, inUse)
	for _, tc := range []struct{ name, dir, want string }{
		{"damaged", damaged, "khadga restore"},
		{"in use", inUse, "in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(khadgaBin, "serve", "--http", "127.0.0.1:0", "--turn-listen", "off")
			cmd.Dir = tc.dir
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out)
			}
			if strings.Contains(string(out), "panic") || !strings.Contains(string(out), tc.want) {
				t.Fatalf("output does not name the problem (%q):\n%s", tc.want, out)
			}
		})
	}
}

// TestRestoreFromEmptyStdin: `khadga restore -` with nothing piped in (a
// cron job or container with standard input on /dev/null) says standard
// input is empty. It used to say "standard input is a terminal", since
// /dev/null is a character device too.
func TestRestoreFromEmptyStdin(t *testing.T) {
	dir := t.TempDir()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	cmd := exec.Command(khadgaBin, "restore", "-")
	cmd.Dir, cmd.Stdin = dir, null
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "standard input is empty") || strings.Contains(string(out), "terminal") {
		t.Fatalf("restore - < /dev/null: %v\n%s", err, out)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "khadga-data", ".khadga-restore-*")); len(left) > 0 {
		t.Errorf("restore - left %v in the data directory", left)
	}
}
