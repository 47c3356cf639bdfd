package natsconn

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/khadga/khadga/internal/testlog"
)

// TestCredsFile: against a NATS server that trusts an operator (as a
// managed NATS system does), a connection with --nats-creds (a user JWT
// and NKey seed of an account with JetStream) gets ready, JetStream
// included; without it, or with a user of an account the server does not
// know, it never does.
func TestCredsFile(t *testing.T) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	operator, err := nkeys.CreateOperator()
	must(err)
	opPub, err := operator.PublicKey()
	must(err)
	opClaims := jwt.NewOperatorClaims(opPub)
	_, err = opClaims.Encode(operator)
	must(err)
	resolver := &server.MemAccResolver{}
	// account makes an account signed by the operator (with JetStream if
	// js), stores it in the server's resolver if known, and returns its
	// public key and a creds file for one of its users.
	account := func(js, known bool) (string, string) {
		t.Helper()
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		claims := jwt.NewAccountClaims(pub)
		if js {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := claims.Encode(operator)
		must(err)
		if known {
			must(resolver.Store(pub, token))
		}
		user, err := nkeys.CreateUser()
		must(err)
		userPub, err := user.PublicKey()
		must(err)
		userJWT, err := jwt.NewUserClaims(userPub).Encode(kp)
		must(err)
		seed, err := user.Seed()
		must(err)
		creds, err := jwt.FormatUserConfig(userJWT, seed)
		must(err)
		path := filepath.Join(t.TempDir(), "user.creds")
		must(os.WriteFile(path, creds, 0o600))
		return pub, path
	}
	system, _ := account(false, true)
	_, khadga := account(true, true)
	_, stranger := account(true, false)

	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		TrustedOperators: []*jwt.OperatorClaims{opClaims}, AccountResolver: resolver, SystemAccount: system})
	must(err)
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}

	ready := func(creds string, within time.Duration) error {
		t.Helper()
		c, err := Connect(Options{URLs: []string{s.ClientURL()}, Creds: creds, Logger: testlog.New(t, slog.LevelInfo),
			ReconnectWait: 50 * time.Millisecond, ProbeInterval: 100 * time.Millisecond})
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		return c.WaitReady(ctx)
	}
	if err := ready(khadga, 10*time.Second); err != nil {
		t.Fatalf("with the creds file: %v", err)
	}
	if err := ready("", 2*time.Second); err == nil {
		t.Error("without credentials, the connection got ready")
	}
	if err := ready(stranger, 2*time.Second); err == nil {
		t.Error("with a user of an account the server does not know, the connection got ready")
	}
}

// TestRefusedConnectionSaysWhy: a server that refuses the password (or
// the creds file) is not a server that is down: Ready, and so /readyz and
// the error an admin command ends with, say what NATS answered and which
// settings to check, and the log says it once, without the password. It
// said "disconnected from NATS", and the log "NATS not reachable yet",
// for as long as the process waited.
func TestRefusedConnectionSaysWhy(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Username: "khadga", Password: "right-password"})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	var logged testlog.Buffer
	c, err := Connect(Options{URLs: []string{"nats://khadga:wrong-password@" + s.Addr().String()},
		Logger: slog.New(slog.NewTextHandler(&logged, nil)), ReconnectWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = c.WaitReady(ctx)
	for _, want := range []string{"authorization violation", "--nats", "--nats-creds"} {
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), want) {
			t.Errorf("not ready with a wrong password: %v; want it to say %q", err, want)
		}
	}
	log := logged.String()
	if n := strings.Count(log, "cannot connect to NATS"); n != 1 {
		t.Errorf("the refusal logged %d times, want once:\n%s", n, log)
	}
	if strings.Contains(log, "wrong-password") || strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("the password shows:\n%s\n%v", log, err)
	}
}
