package admin_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store"
)

func TestAdminSocketWhileServing(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	sock := filepath.Join(s.DataDir, "admin.sock")
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	a, err := admin.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if err := a.AddUser(ctx, "root", "a long admin password", proto.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if err := a.AddUser(ctx, "root", "a long admin password", proto.RoleAdmin); !errors.Is(err, store.ErrUserExists) {
		t.Fatalf("duplicate add: %v", err)
	}
	if err := a.AddUser(ctx, "x", "short", proto.RoleUser); !errors.Is(err, admin.ErrBadRequest) {
		t.Fatalf("bad add: %v", err)
	}
	s.Login(t, "root", "a long admin password")

	if err := a.SetDisabled(ctx, "root", true); err != nil {
		t.Fatal(err)
	}
	code, _ := s.Post(t, "/api/login", map[string]string{"username": "root", "password": "a long admin password"})
	if code != 401 {
		t.Fatalf("disabled user logged in: %d", code)
	}
	us, err := a.ListUsers(ctx)
	if err != nil || len(us) != 1 || !us[0].Disabled || us[0].Role != proto.RoleAdmin {
		t.Fatalf("list: %+v %v", us, err)
	}
	if err := a.DeleteUser(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}

	t.Run("recorder token", func(t *testing.T) {
		if _, err := a.MintToken(ctx, admin.TokenRequest{User: "rec", Role: proto.RoleRecorder, TTL: time.Hour}); !errors.Is(err, admin.ErrBadRequest) {
			t.Fatalf("recorder token without a room: %v", err)
		}
		tok, err := a.MintToken(ctx, admin.TokenRequest{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"lab"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		c := s.Connect(t, tok.Token, nil)
		if c.Welcome.Role != proto.RoleRecorder || c.Welcome.User != "rec" {
			t.Fatalf("welcome %+v", c.Welcome)
		}
		c.Join("lab")
		c.Send(&proto.Message{Type: proto.TypeJoin, ID: "j2", Room: "elsewhere"})
		c.ExpectError(proto.CodeUnauthorized, "j2")
	})

	t.Run("hot backup", func(t *testing.T) {
		var buf bytes.Buffer
		if _, err := a.Backup(ctx, &buf); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "backup.db")
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		info, err := store.Check(path)
		// root, and the name the bot token above holds.
		if err != nil || info.Users != 2 || info.Version != store.SchemaVersion {
			t.Fatalf("backup check: %+v %v", info, err)
		}
	})
}

func TestCheckRefusesGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garbage.db")
	os.WriteFile(path, bytes.Repeat([]byte("not bbolt"), 1000), 0o600)
	if _, err := store.Check(path); err == nil {
		t.Fatal("Check accepted a garbage file")
	}
}

func TestResetTOTP(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	s.Register(t, "dana", "a long enough password")
	err := s.Store().UpdateUser("dana", func(u *store.User) error {
		u.TOTP = &store.TOTP{Secret: "JBSWY3DPEHPK3PXP", Enabled: true}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]string{"username": "dana", "password": "a long enough password"}
	if code, body := s.Post(t, "/api/login", creds); code != 401 || !bytes.Contains(body, []byte("totp_required")) {
		t.Fatalf("login with 2FA on: %d %s", code, body)
	}
	a, err := admin.Dial(filepath.Join(s.DataDir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ResetTOTP(context.Background(), "dana"); err != nil {
		t.Fatal(err)
	}
	s.Login(t, "dana", "a long enough password")
	if err := a.ResetTOTP(context.Background(), "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("reset of an unknown user: %v", err)
	}
}

// TestAdminErrorsSayWhatIsWrong: what an admin command prints for a
// refusal names the problem once, the same over the socket as on the
// file. Over the socket, the client wrapped the server's message, which
// already began with the sentinel's, in the sentinel again ("admin: bad
// request (admin: bad request: password must be ...)"), and an unknown
// user or token id read `store: not found (update user "nobody": store:
// not found)`.
func TestAdminErrorsSayWhatIsWrong(t *testing.T) {
	a := dialAdmin(t, signalingtest.Start(t, signalingtest.Options{}))
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		is   error
		want string
	}{
		{"short password", a.AddUser(ctx, "x-user", "short", proto.RoleUser), admin.ErrBadRequest,
			"admin: bad request: password must be at least 10 characters long"},
		{"unknown user", a.SetDisabled(ctx, "nobody", true), store.ErrNotFound, `no user "nobody"`},
		{"unknown user's role", a.SetRole(ctx, "nobody", proto.RoleAdmin), store.ErrNotFound, `no user "nobody"`},
		{"unknown user's password", a.SetPassword(ctx, "nobody", "a long enough password"), store.ErrNotFound, `no user "nobody"`},
		{"unknown user's second factor", a.ResetTOTP(ctx, "nobody"), store.ErrNotFound, `no user "nobody"`},
		{"deleting an unknown user", a.DeleteUser(ctx, "nobody"), store.ErrNotFound, `no user "nobody"`},
		{"unknown token", a.RevokeToken(ctx, "nosuch"), store.ErrNotFound, `no bot token "nosuch"`},
	} {
		if !errors.Is(tc.err, tc.is) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.is)
			continue
		}
		msg := tc.err.Error()
		if !strings.HasPrefix(msg, tc.want) || strings.Count(msg, tc.is.Error()) > 1 {
			t.Errorf("%s: %q, want it to start %q and name %q at most once", tc.name, msg, tc.want, tc.is)
		}
	}
}
