//go:build linux

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// errNoPeerJS is returned when bench/peerjs has not been set up.
var errNoPeerJS = errors.New("PeerJS server not installed: run bench/peerjs/setup.sh")

// peerJSLimit is the concurrent_limit the PeerJS server starts with (its
// default, 5,000, is below the idle phase's 10,000).
const peerJSLimit = 20000

// peerJSTarget is the PeerJS server (npm package "peer") as a child process.
// Its protocol, from peer/dist/index.cjs: a client opens
// /peerjs?key=peerjs&id=ID&token=TOKEN, gets {"type":"OPEN"}, sends
// {"type":"HEARTBEAT"} (never answered), and relays
// {"type":"OFFER","dst":ID,"payload":…}; the server sets src and forwards
// type, src, dst and payload.
type peerJSTarget struct {
	proc   *process
	wsBase string
	stdin  io.WriteCloser
	run    string
	next   atomic.Uint64
	cl     *client
}

// startPeerJS starts server.js for cl's scheme: with wss, it serves https
// and wss with the bench's certificate (PeerServer's ssl option).
func startPeerJS(ctx context.Context, cfg *config, env *runEnv, cl *client, log *slog.Logger) (*peerJSTarget, error) {
	dir, err := peerJSDir(cfg.PeerJSDir)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(env.dir, "peerjs-")
	if err != nil {
		return nil, err
	}
	args := []string{filepath.Join(dir, "server.js"), "0", strconv.Itoa(peerJSLimit)}
	if cl.scheme == schemeWSS {
		args = append(args, env.cert.keyFile, env.cert.certFile)
	}
	cmd := exec.Command(cfg.Node, args...)
	cmd.Dir = dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// The server exits when its stdin closes: a crashed bench leaves no
	// server behind.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	p, err := startProcess(cmd, tmp, log)
	if err != nil {
		return nil, err
	}
	port, err := readPort(ctx, out, p)
	if err != nil {
		stdin.Close()
		tail := p.logTail() // before stop, which removes the log
		_ = p.stop()
		return nil, fmt.Errorf("PeerJS server did not start: %w\n%s", err, tail)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	run := make([]byte, 3)
	_, _ = rand.Read(run)
	t := &peerJSTarget{
		proc:   p,
		stdin:  stdin,
		wsBase: fmt.Sprintf("%s://127.0.0.1:%d/peerjs?key=peerjs", cl.scheme, port),
		run:    hex.EncodeToString(run),
		cl:     cl,
	}
	log.Info("PeerJS server ready", slog.Int("port", port), slog.Int("pid", cmd.Process.Pid))
	return t, nil
}

// peerJSDir finds server.js with node_modules/peer beside it.
func peerJSDir(dir string) (string, error) {
	if dir == "" {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			return "", fmt.Errorf("go env GOMOD: %w (pass -peerjs-dir)", err)
		}
		mod := strings.TrimSpace(string(gomod))
		if mod == "" || mod == os.DevNull {
			return "", errors.New("not inside the khadga module: run from the repository or pass -peerjs-dir")
		}
		dir = filepath.Join(filepath.Dir(mod), "bench", "peerjs")
	}
	for _, f := range []string{"server.js", "node_modules/peer/package.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return "", fmt.Errorf("%s: %w", dir, errNoPeerJS)
		}
	}
	return dir, nil
}

// readPort reads the {"port":N} line server.js prints when it listens.
func readPort(ctx context.Context, out io.Reader, p *process) (int, error) {
	type result struct {
		port int
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadBytes('\n')
		var v struct {
			Port int `json:"port"`
		}
		if err == nil {
			err = json.Unmarshal(line, &v)
		}
		ch <- result{v.Port, err}
	}()
	select {
	case r := <-ch:
		return r.port, r.err
	case <-p.done:
		return 0, fmt.Errorf("server exited: %w", p.err)
	case <-time.After(60 * time.Second):
		return 0, errors.New("no port after 60 s")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (t *peerJSTarget) pid() int { return t.proc.cmd.Process.Pid }

func (t *peerJSTarget) dial(ctx context.Context) (*benchConn, error) {
	id := fmt.Sprintf("b%s-%d", t.run, t.next.Add(1))
	ws, err := dialWS(ctx, t.cl.dialer, t.wsBase+"&id="+id+"&token=tok"+id, nil)
	if err != nil {
		return nil, err
	}
	var m struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	if _, err := readJSON(ws, &m, 30*time.Second); err != nil {
		ws.Close()
		return nil, fmt.Errorf("read OPEN: %w", err)
	}
	if m.Type != "OPEN" {
		ws.Close()
		return nil, fmt.Errorf("first message is %q %s, want OPEN", m.Type, m.Payload)
	}
	return t.cl.conn(ws, id), nil
}

// pair does nothing: PeerJS relays between any two ids.
func (t *peerJSTarget) pair(context.Context, *benchConn, *benchConn, string) error { return nil }

// presence is false: PeerJS has no presence feed.
func (t *peerJSTarget) presence() bool { return false }

func (t *peerJSTarget) heartbeat() []byte { return []byte(`{"type":"HEARTBEAT"}`) }

func (t *peerJSTarget) signalPrefix(dst string) []byte {
	return []byte(`{"type":"OFFER","dst":"` + dst + `","payload":`)
}

func (t *peerJSTarget) signalSuffix() []byte { return []byte(`}`) }

func (t *peerJSTarget) close() error {
	t.stdin.Close()
	return t.proc.stop()
}
