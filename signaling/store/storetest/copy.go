package storetest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// Fill writes one of every kind of record into s: users (one with TOTP
// and email state, and a bot's name), families (one rotated, one revoked), signing keys (one
// retired), bot tokens (one revoked), secrets, a room with an invite and
// audit events. Tests of copies (reopen, backup, migrate) fill one store
// and compare another with Same.
func Fill(t *testing.T, s store.Backend) {
	t.Helper()
	if err := s.CreateUser(store.User{Name: "ann", PasswordHash: "$argon2id$ann", Role: "admin", Rooms: []string{"lab"},
		Created: t0, TOTP: &store.TOTP{Secret: "JBSWY3DP", Enabled: true, LastStep: 9, Recovery: [][]byte{[]byte("rc")}},
		Email: "ann@example.org", EmailVerified: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(store.User{Name: "bob.b", PasswordHash: "$argon2id$bob", Role: "user", Created: t0,
		Disabled: true, Email: "bob@example.org", EmailToken: []byte("tok"), EmailExpires: t0.Add(time.Hour),
		Resets: []store.ResetLink{{Token: []byte("rst"), Sent: t0}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(store.User{Name: "rec", Bot: true, Created: t0}); err != nil {
		t.Fatal(err)
	}
	far := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	mustCreateFamilies(t, s,
		store.Family{ID: "fa1", User: "ann", Current: []byte("h0"), Created: t0, Expires: far},
		store.Family{ID: "fa2", User: "ann", Current: []byte("g0"), Created: t0.Add(time.Second), Expires: far},
		store.Family{ID: "fb1", User: "bob.b", Current: []byte("k0"), Created: t0, Expires: far})
	if _, err := s.RotateFamily("fa1", []byte("h0"), []byte("h1"), t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeFamily("fb1"); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"k1", "k2"} {
		k := store.SigningKey{ID: id, Alg: "EdDSA", Private: []byte("priv-" + id), Created: t0.Add(time.Duration(i) * time.Hour)}
		if err := s.AddSigningKey(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RetireSigningKey("k1"); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateSigningKey("k2", func(k *store.SigningKey) error { k.TokensUntil = far; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, b := range []store.BotToken{
		{ID: "b1", Kind: store.BotRefresh, User: "rec", Role: "recorder", Rooms: []string{"lab"}, Secret: []byte("hash"),
			Created: t0, Expires: far, LastUsed: t0.Add(time.Minute)},
		{ID: "b2", Kind: store.BotAccess, User: "cam", Role: "user", Created: t0, Expires: far, Revoked: t0.Add(time.Hour)},
	} {
		if err := s.CreateBotToken(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Secret("turn-rest-secret", func() ([]byte, error) { return []byte("s3cret"), nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SetRoom("lab", "ann", 10, func(r *store.Room) error {
		r.MaxMembers, r.InviteHash, r.Created = 7, store.HashInvite("invite"), t0
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, kind := range []string{"login", "login-failed", "refresh-reuse"} {
		if err := s.Audit(store.AuditEvent{Time: t0.Add(time.Duration(i) * time.Minute), Kind: kind, User: "ann",
			Addr: "192.0.2.1", Detail: "d"}); err != nil {
			t.Fatal(err)
		}
	}
}

// contents is everything a store holds, for comparison. Audit sequence
// numbers are left out: a copy numbers its events anew.
type contents struct {
	Users    []store.User
	Families []store.Family
	Keys     []store.SigningKey
	Bots     []store.BotToken
	Secrets  map[string][]byte
	Rooms    []store.Room
	Audit    []store.AuditEvent
}

func read(t *testing.T, s store.Backend) contents {
	t.Helper()
	var c contents
	var err error
	if c.Users, err = s.ListUsers(); err != nil {
		t.Fatal(err)
	}
	if c.Families, err = s.ListFamilies(); err != nil {
		t.Fatal(err)
	}
	if c.Keys, err = s.SigningKeys(); err != nil {
		t.Fatal(err)
	}
	if c.Bots, err = s.ListBotTokens(); err != nil {
		t.Fatal(err)
	}
	if c.Secrets, err = s.Secrets(); err != nil {
		t.Fatal(err)
	}
	if c.Rooms, err = s.ListRooms(); err != nil {
		t.Fatal(err)
	}
	if c.Audit, err = s.AuditLog(1 << 30); err != nil {
		t.Fatal(err)
	}
	for i := range c.Audit {
		c.Audit[i].Seq = 0
	}
	// Round-trip through JSON, as the stores keep it, so that time zones
	// and nil-versus-empty do not count as differences.
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var out contents
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Same fails t unless got holds exactly what want holds (audit sequence
// numbers aside).
func Same(t *testing.T, want, got store.Backend) {
	t.Helper()
	w, g := read(t, want), read(t, got)
	if len(w.Users) == 0 {
		t.Fatal("Same: the reference store is empty")
	}
	if !reflect.DeepEqual(w, g) {
		wj, _ := json.MarshalIndent(w, "", " ")
		gj, _ := json.MarshalIndent(g, "", " ")
		t.Fatalf("stores differ:\nwant %s\ngot  %s", wj, gj)
	}
}

func testReopenKeepsEverything(t *testing.T, c Config) {
	s, o := open(t, c, Limits{})
	Fill(t, s)
	before := read(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(); err == nil {
		t.Error("Ping after Close succeeded")
	}
	s2 := o(t, Limits{})
	if got := read(t, s2); !reflect.DeepEqual(before, got) {
		t.Fatalf("after reopen:\nwant %+v\ngot  %+v", before, got)
	}
	// And it keeps working: the rotated token's successor rotates.
	if _, err := s2.RotateFamily("fa1", []byte("h1"), []byte("h2"), t0); err != nil {
		t.Fatalf("rotate after reopen: %v", err)
	}
}

// testBackupIsValidStore: WriteTo gives a bbolt store file that Check
// accepts and that holds everything.
func testBackupIsValidStore(t *testing.T, c Config) {
	s, _ := open(t, c, Limits{})
	if err := s.Ping(); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	Fill(t, s)
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("WriteTo = %d, %v (buffer %d)", n, err, buf.Len())
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := store.Check(path)
	if err != nil || info.Users != 3 || info.Families != 3 || info.SigningKeys != 2 || info.BotTokens != 2 || info.Secrets != 1 ||
		info.AuditEvents != 3 || info.Rooms != 1 {
		t.Fatalf("Check(backup) = %+v, %v", info, err)
	}
	b, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatalf("open backup: %v", err)
	}
	defer b.Close()
	Same(t, s, b)
}

// testCopyKeepsEverything: Copy into a fresh store of the same backend
// carries every record, and says how many of each.
func testCopyKeepsEverything(t *testing.T, c Config) {
	src, _ := open(t, c, Limits{})
	dst, _ := open(t, c, Limits{})
	Fill(t, src)
	st, err := store.Copy(dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if st != (store.CopyStats{Users: 3, Families: 3, SigningKeys: 2, BotTokens: 2, Secrets: 1, Rooms: 1, AuditEvents: 3}) {
		t.Fatalf("Copy = %+v", st)
	}
	Same(t, src, dst)
}
