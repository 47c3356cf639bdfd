package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/turn"
)

// secretPoll is how often --turn-secret-file is read for a change. The
// file is read and its secrets compared, not its size and time: two
// versions of the same size written within one tick of the kernel's
// coarse file clock have the same time, and the second was missed.
const secretPoll = 5 * time.Second

// secretWatcher re-reads the TURN secrets (--turn-secret, then the lines
// of --turn-secret-file) when the file changes and on SIGHUP, and gives
// them to the running server, which keeps its allocations: rotating the
// secret needs no restart. A file that does not read, or gives no or bad
// secrets, is logged once and changes nothing.
type secretWatcher struct {
	cfg     *turnConfig
	set     func([][]byte) error // the server's SetSecrets, or secretPrecedence's
	log     *slog.Logger
	current [32]byte // hash of the secrets in use
	lastErr string
}

// followSecrets starts the watchers of the secrets srv was started with:
// --turn-secret-file's, and the store's when they came from st
// (fromStore: the file, if any, gave none). stop ends both.
//
// The store's secrets serve until the file gives some; from then on the
// file's replace them for good (docs/turn.md), and the store is no longer
// followed: a rotation in the cluster must not undo the operator's file.
func (c *turnConfig) followSecrets(st store.Backend, fromStore bool, srv *turn.Server, secrets [][]byte, log *slog.Logger) (stop func()) {
	if !fromStore {
		return c.watchSecrets(srv.SetSecrets, secrets, log)
	}
	p := &secretPrecedence{srv: srv}
	p.stopStore = sync.OnceFunc(watchStoredSecrets(st, p.fromStore, secrets, log))
	stopFile := c.watchSecrets(func(s [][]byte) error { return p.fromFile(s, log) }, secrets, log)
	return func() {
		stopFile()
		p.stopStore()
	}
}

// errSecretsFromFile refuses the store's secrets once --turn-secret-file
// gave some.
var errSecretsFromFile = errors.New("the TURN secrets come from --turn-secret-file")

// secretPrecedence applies the file's and the store's secrets in
// followSecrets's order. One lock orders the two watchers' SetSecrets, so
// a store change that races the file's first secrets cannot land after
// them.
type secretPrecedence struct {
	srv       *turn.Server
	stopStore func() // idempotent

	mu       sync.Mutex
	fileGave bool
}

func (p *secretPrecedence) fromStore(secrets [][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fileGave {
		return errSecretsFromFile
	}
	return p.srv.SetSecrets(secrets)
}

func (p *secretPrecedence) fromFile(secrets [][]byte, log *slog.Logger) error {
	p.mu.Lock()
	err := p.srv.SetSecrets(secrets)
	first := err == nil && !p.fileGave
	if first {
		p.fileGave = true
	}
	p.mu.Unlock()
	if first {
		p.stopStore() // outside the lock: its watcher may be waiting for it
		log.Info("TURN secrets come from --turn-secret-file from now on; the store's are no longer followed")
	}
	return err
}

// watchSecrets starts watching --turn-secret-file, whose secrets it hands
// to set; the server was started with secrets. stop ends it. Without a
// file there is nothing to watch.
func (c *turnConfig) watchSecrets(set func([][]byte) error, secrets [][]byte, log *slog.Logger) (stop func()) {
	if c.SecretFile == "" {
		return func() {}
	}
	w := &secretWatcher{cfg: c, set: set, log: log, current: hashSecrets(secrets)}
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, hup)
	}()
	return func() { signal.Stop(hup); cancel(); <-done }
}

func (w *secretWatcher) run(ctx context.Context, hup <-chan os.Signal) {
	t := time.NewTicker(secretPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			w.reload("SIGHUP")
		case <-t.C:
			w.reload("file changed") // quiet when nothing changed
		}
	}
}

// reload reads the secrets and hands them to the server if they changed;
// it logs a change, and a failure once until it changes.
func (w *secretWatcher) reload(why string) {
	secrets, err := w.cfg.readSecrets()
	if err == nil && len(secrets) == 0 {
		err = errors.New("--turn-secret-file gives no secret")
	}
	sum := hashSecrets(secrets)
	if err == nil && sum == w.current {
		return
	}
	if err == nil {
		err = w.set(secrets)
	}
	if err != nil {
		if err.Error() != w.lastErr {
			w.lastErr = err.Error()
			w.log.Error("TURN secrets not reloaded; the ones in use stay", slog.String("why", why), slog.Any("err", err))
		}
		return
	}
	w.current, w.lastErr = sum, ""
	w.log.Info("TURN secrets reloaded", slog.String("why", why), slog.Int("secrets", len(secrets)))
}

// hashSecrets tells one list of secrets from another without keeping them
// twice.
func hashSecrets(secrets [][]byte) [32]byte {
	var b bytes.Buffer
	for _, s := range secrets {
		b.Write(s)
		b.WriteByte('\n')
	}
	return sha256.Sum256(b.Bytes())
}
