//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/khadga/khadga/proto"
)

// benchPassword is the password of the accounts the bench registers.
const benchPassword = "khadga-bench-password"

// khadgaTarget is a khadga server, started by the bench or given by -url.
type khadgaTarget struct {
	base    string // http(s)://host:port
	wsURL   string
	proc    *process // of the server the bench started, else nil
	dataDir string   // of the server the bench started
	serverP int
	natsURL string        // of a cluster node: its tokens are minted on the cluster
	ttl     time.Duration // of the minted tokens: the run's length and more
	tokens  []string
	feed    bool // connections ask for the presence feed
	next    atomic.Uint64
	cl      *client
	log     *slog.Logger
}

// startKhadga starts a fresh server for cl's scheme (or takes -url's) and
// gets its tokens. presence says whether connections open the presence
// feed (?presence=1, as the web app does) or not (?presence=0).
func startKhadga(ctx context.Context, cfg *config, env *runEnv, cl *client, presence bool, log *slog.Logger) (*khadgaTarget, error) {
	t, err := newKhadgaTarget(ctx, cfg, env, cl, presence, "", 0, log)
	if err != nil {
		return nil, err
	}
	if err := t.getTokens(ctx, cfg.Users); err != nil {
		_ = t.close()
		return nil, err
	}
	return t, nil
}

// newKhadgaTarget starts a fresh server (or takes -url's), without
// tokens. With natsURL it starts a cluster node on that NATS server
// (khadga serve --nats).
func newKhadgaTarget(ctx context.Context, cfg *config, env *runEnv, cl *client, presence bool, natsURL string, procs int, log *slog.Logger) (*khadgaTarget, error) {
	t := &khadgaTarget{cl: cl, log: log, base: strings.TrimRight(cfg.URL, "/"), serverP: cfg.PID, feed: presence, natsURL: natsURL, ttl: cfg.tokenTTL()}
	if t.base == "" {
		var extra []string
		if natsURL != "" {
			extra = []string{"--nats", natsURL}
		}
		p, base, err := spawnKhadga(ctx, cfg, env, cl, procs, log, extra...)
		if err != nil {
			return nil, err
		}
		t.proc, t.base, t.serverP = p, base, p.cmd.Process.Pid
		t.dataDir = filepath.Join(p.dir, "data")
	}
	q := "0"
	if presence {
		q = "1"
	}
	t.wsURL = "ws" + strings.TrimPrefix(t.base, "http") + "/ws?presence=" + q
	return t, nil
}

// getTokens mints users' tokens, or registers and logs in users.
func (t *khadgaTarget) getTokens(ctx context.Context, users int) error {
	if err := t.mintTokens(ctx, users); err != nil {
		t.log.Info("khadga token failed; registering and logging in instead", slog.Any("err", err))
		t.tokens = nil
		return t.login(ctx, users)
	}
	return nil
}

// mintTokens gets access tokens from `khadga token` through the admin
// socket of the server the bench started. Unlike a login it costs the
// server no argon2 hash, whose scratch memory (tens of MiB) the Go runtime
// keeps for minutes and would otherwise sit in the idle phase's baseline.
func (t *khadgaTarget) mintTokens(ctx context.Context, users int) error {
	if t.proc == nil {
		return errors.New("server not started by the bench")
	}
	run := make([]byte, 3)
	_, _ = rand.Read(run)
	for i := range users {
		name := fmt.Sprintf("bench-%s-%d", hex.EncodeToString(run), i)
		store := []string{"--data", t.dataDir}
		if t.natsURL != "" {
			store = []string{"--nats", t.natsURL}
		}
		cmd := exec.CommandContext(ctx, t.proc.cmd.Path, append([]string{"token", "--user", name, "--ttl", t.ttl.String()}, store...)...)
		out, err := cmd.Output()
		tok := strings.TrimSpace(string(out))
		if err != nil || tok == "" || strings.ContainsAny(tok, " \n") {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return fmt.Errorf("khadga token: %w: %s", err, bytes.TrimSpace(ee.Stderr))
			}
			return fmt.Errorf("khadga token: %w (output %.40q)", err, tok)
		}
		t.tokens = append(t.tokens, tok)
	}
	t.log.Info("khadga tokens minted", slog.Int("users", users))
	return nil
}

// login registers cfg.Users accounts (an existing one is fine) and logs each
// in once; connections share the access tokens, which keeps clear of the
// login rate limiter.
func (t *khadgaTarget) login(ctx context.Context, users int) error {
	run := make([]byte, 3)
	_, _ = rand.Read(run)
	for i := range users {
		name := fmt.Sprintf("bench-%s-%d", hex.EncodeToString(run), i)
		body := map[string]string{"username": name, "password": benchPassword}
		code, _, err := t.post(ctx, "/api/register", body)
		if err != nil {
			return err
		}
		if code != http.StatusCreated && code != http.StatusConflict {
			return fmt.Errorf("register %s: HTTP %d", name, code)
		}
		code, b, err := t.post(ctx, "/api/login", body)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("login %s: HTTP %d: %s", name, code, bytes.TrimSpace(b))
		}
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(b, &tok); err != nil || tok.AccessToken == "" {
			return fmt.Errorf("login %s: no access_token in the answer", name)
		}
		t.tokens = append(t.tokens, tok.AccessToken)
	}
	t.log.Info("khadga accounts ready", slog.Int("users", users))
	return nil
}

// post sends a JSON body, waiting out 429s as Retry-After asks (up to 2 min).
func (t *khadgaTarget) post(ctx context.Context, path string, body any) (int, []byte, error) {
	b, _ := json.Marshal(body)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+path, bytes.NewReader(b))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := t.cl.http.Do(req)
		if err != nil {
			return 0, nil, fmt.Errorf("POST %s: %w", path, err)
		}
		out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			return resp.StatusCode, out, nil
		}
		wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		t.log.Info("rate limited; waiting", slog.String("path", path), slog.Int("seconds", max(wait, 1)))
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(time.Duration(max(wait, 1)) * time.Second):
		}
	}
}

func (t *khadgaTarget) pid() int { return t.serverP }

func (t *khadgaTarget) dial(ctx context.Context) (*benchConn, error) {
	tok := t.tokens[t.next.Add(1)%uint64(len(t.tokens))]
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	d := *t.cl.dialer
	d.Subprotocols = proto.Subprotocols
	ws, err := dialWS(ctx, &d, t.wsURL, h)
	if err != nil {
		return nil, err
	}
	var m proto.Message
	if _, err := readJSON(ws, &m, 30*time.Second); err != nil {
		ws.Close()
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	var w proto.Welcome
	if m.Type != proto.TypeWelcome || json.Unmarshal(m.Data, &w) != nil || w.Peer == "" {
		ws.Close()
		return nil, fmt.Errorf("first message is %q, want a welcome with a peer id", m.Type)
	}
	return t.cl.conn(ws, w.Peer), nil
}

// pair joins a and b to room, each waiting for its joined.
func (t *khadgaTarget) pair(ctx context.Context, a, b *benchConn, room string) error {
	for _, c := range []*benchConn{a, b} {
		join, _ := (&proto.Message{Type: proto.TypeJoin, ID: "j", Room: room}).Encode()
		if err := c.write(join); err != nil {
			return fmt.Errorf("join %s: %w", room, err)
		}
		if err := awaitType(c, proto.TypeJoined); err != nil {
			return fmt.Errorf("join %s: %w", room, err)
		}
	}
	// a hears of b's join before either signals: on a cluster it reaches
	// a's node over NATS, and until then that node would refuse a's
	// signals to b as signals to a peer who shares no room with a.
	if err := awaitPeerJoined(a, b.id); err != nil {
		return fmt.Errorf("join %s: %w", room, err)
	}
	// A last round trip on each: after its pong (which follows a's
	// peer-joined) the server sends nothing unasked, so gorilla holds no
	// bytes it has read ahead when the relay's own reader takes over.
	for _, c := range []*benchConn{a, b} {
		if err := c.write([]byte(`{"type":"ping","id":"sync"}`)); err != nil {
			return fmt.Errorf("sync %s: %w", room, err)
		}
		if err := awaitType(c, proto.TypePong); err != nil {
			return fmt.Errorf("sync %s: %w", room, err)
		}
	}
	return nil
}

// awaitType reads until a message of type want, failing on an error message.
func awaitType(c *benchConn, want string) error {
	for {
		var m proto.Message
		if _, err := readJSON(c.ws, &m, 30*time.Second); err != nil {
			return err
		}
		switch m.Type {
		case want:
			return nil
		case proto.TypeError:
			return fmt.Errorf("server error: %s", m.Data)
		}
	}
}

// awaitPeerJoined reads c until a peer-joined for peer.
func awaitPeerJoined(c *benchConn, peer string) error {
	for {
		var m proto.Message
		if _, err := readJSON(c.ws, &m, 30*time.Second); err != nil {
			return fmt.Errorf("waiting for peer-joined %s: %w", peer, err)
		}
		switch m.Type {
		case proto.TypePeerJoined:
			var mem proto.Member
			if json.Unmarshal(m.Data, &mem) == nil && mem.Peer == peer {
				return nil
			}
		case proto.TypeError:
			return fmt.Errorf("server error: %s", m.Data)
		}
	}
}

func (t *khadgaTarget) presence() bool { return t.feed }

func (t *khadgaTarget) heartbeat() []byte { return []byte(`{"type":"ping"}`) }

func (t *khadgaTarget) signalPrefix(dst string) []byte {
	return []byte(`{"type":"signal","to":"` + dst + `","data":`)
}

func (t *khadgaTarget) signalSuffix() []byte { return []byte(`}`) }

func (t *khadgaTarget) close() error {
	if t.proc == nil {
		return nil
	}
	return t.proc.stop()
}
