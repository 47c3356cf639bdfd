package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestOperatorCommands runs the operator's chores as written in
// docs/operations.md, with the built binary: through the admin socket
// while the server runs, and on the store file when it is stopped.
func TestOperatorCommands(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir)
	mustRun := func(stdin string, args ...string) string {
		t.Helper()
		out, err := run(t, dir, stdin, args...)
		if err != nil {
			t.Fatalf("khadga %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	login := func(password string) int {
		t.Helper()
		code, _ := post(t, p.url+"/api/login", `{"username":"alice","password":"`+password+`"}`)
		return code
	}
	mustRun("first long password\n", "user", "add", "alice")
	mustRun("second long password\n", "user", "passwd", "alice")
	if login("first long password") != 401 || login("second long password") != 200 {
		t.Fatal("user passwd did not replace the password")
	}
	mustRun("", "user", "disable", "alice")
	if login("second long password") != 401 {
		t.Fatal("a disabled user signed in")
	}
	if out := mustRun("", "user", "list"); !regexp.MustCompile(`alice\s+user\s+true`).MatchString(out) {
		t.Fatalf("user list does not show alice disabled:\n%s", out)
	}
	mustRun("", "user", "enable", "alice")
	if login("second long password") != 200 {
		t.Fatal("an enabled user cannot sign in")
	}

	out := mustRun("", "token", "--user", "rec", "--role", "recorder", "--room", "lab", "--refresh")
	tok := strings.TrimSpace(strings.Split(out, "\n")[0])
	id := regexp.MustCompile(`id (\S+),`).FindStringSubmatch(out)
	if !strings.HasPrefix(tok, "kbt_") || id == nil {
		t.Fatalf("token --refresh printed:\n%s", out)
	}
	refresh := func() int {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"refresh_token": tok})
		code, _ := post(t, p.url+"/api/refresh", string(body))
		return code
	}
	if refresh() != 200 {
		t.Fatal("the bot refresh token buys no access token")
	}
	if out := mustRun("", "token", "list"); !regexp.MustCompile(id[1] + `\s+rec\s+recorder\s+lab\s+refresh\s+\S+\s+active\s+20`).MatchString(out) {
		t.Fatalf("token list:\n%s", out)
	}
	mustRun("", "token", "revoke", id[1])
	if refresh() != 401 {
		t.Fatal("a revoked bot token still buys access tokens")
	}
	if out := mustRun("", "token", "list"); !strings.Contains(out, "revoked 20") {
		t.Fatalf("token list after revoke:\n%s", out)
	}
	if out, err := run(t, dir, "", "token", "revoke", "nope"); err == nil || !strings.Contains(out, `no bot token "nope"`) {
		t.Fatalf("revoking an unknown token: %v\n%s", err, out)
	}

	old := strings.Fields(strings.Split(mustRun("", "keys", "list"), "\n")[1])[0]
	kid := strings.TrimSpace(mustRun("", "keys", "rotate"))
	keys := mustRun("", "keys", "list")
	if !regexp.MustCompile(old+`\s+\S+\s+verifying until 20`).MatchString(keys) || !regexp.MustCompile(kid+`\s+\S+\s+signing`).MatchString(keys) {
		t.Fatalf("keys list after rotate (old %s, new %s):\n%s", old, kid, keys)
	}
	if login("second long password") != 200 {
		t.Fatal("sign-in after the rotation failed")
	}
	p.stop(t)

	// Stopped: the same commands open the store file.
	mustRun("third long password\n", "user", "passwd", "alice")
	third := strings.TrimSpace(mustRun("", "keys", "rotate"))
	if keys := mustRun("", "keys", "list"); !strings.Contains(keys, third+" ") || strings.Count(keys, "verifying until") != 2 {
		t.Fatalf("keys list after an offline rotation:\n%s", keys)
	}
	if out := mustRun("", "token", "list"); !strings.Contains(out, id[1]) {
		t.Fatalf("token list on the file:\n%s", out)
	}
	p = startServe(t, dir)
	if login("second long password") != 401 || login("third long password") != 200 {
		t.Fatal("the password set on the stopped server's file does not hold")
	}
	p.stop(t)
}

// TestBackupNeedsAStore: a backup (or a migrate, or a list) where there
// is no store and no server (a cron job without --data, a typo) fails and
// says where it looked. It used to make an empty store there, back that up and exit
// 0, every night.
func TestBackupNeedsAStore(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, dir, "", "backup", "nightly.db")
	if err == nil || !strings.Contains(out, "no store at") {
		t.Fatalf("backup with no store: %v\n%s", err, out)
	}
	for _, f := range []string{"nightly.db", "khadga-data/khadga.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s was made", f)
		}
	}
	out, err = run(t, dir, "", "migrate", "--nats", "nats://127.0.0.1:1", "--from", filepath.Join(dir, "nope.db"))
	if err == nil || !strings.Contains(out, "no store at") {
		t.Fatalf("migrate from no store: %v\n%s", err, out)
	}
	// So do the other admin commands, minting a token included (the real
	// server would refuse it), but for user add, which may set a new store
	// up with a first admin before the first start.
	// turn-secret rotate too: it said "rotated" about a new store that no
	// server reads, while the server's kept its old secret.
	for _, args := range [][]string{{"user", "list"}, {"user", "delete", "root"}, {"token", "list"}, {"keys", "list"},
		{"token", "--user", "rec", "--role", "recorder", "--room", "lab"}, {"turn-secret", "rotate"}} {
		out, err := run(t, dir, "", args...)
		if err == nil || !strings.Contains(out, "no store at") {
			t.Errorf("%v with no store: %v\n%s", args, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "khadga-data")); err == nil {
		t.Error("a command with no store made the data directory")
	}
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root", "--role", "admin"); err != nil {
		t.Fatalf("user add with no store: %v\n%s", err, out)
	}
}

// TestTurnSecretRotateStoppedServer: `khadga turn-secret rotate` without
// --nats rotates the secret in a stopped server's store, and refuses a
// running server's data directory at once, saying why.
func TestTurnSecretRotateStoppedServer(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir)
	out, err := run(t, dir, "", "turn-secret", "rotate")
	if err == nil || !strings.Contains(out, "stop it first") {
		t.Fatalf("turn-secret rotate beside a running server: %v\n%s", err, out)
	}
	p.stop(t)
	if out, err := run(t, dir, "", "turn-secret", "rotate"); err != nil || !strings.Contains(out, "2 secrets kept") {
		t.Fatalf("turn-secret rotate on a stopped server: %v\n%s", err, out)
	}
}

// TestUserAddChecksBeforeItAsks: `khadga user add` with a bad name or
// role is refused before it asks for the password (twice, at a terminal)
// and before it makes a store. It used to make the store first, then
// read the password, and only then refuse, leaving a new empty store
// behind in what may be a mistyped --data.
func TestUserAddChecksBeforeItAsks(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"user", "add", "dave", "--role", "superuser"}, "role must be user or admin"},
		{[]string{"user", "add", "Bad Name!"}, "username may contain only"},
	} {
		dir := t.TempDir()
		// Nothing on standard input: a command that read the password
		// first would say so instead.
		out, err := run(t, dir, "", tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%q: %v\n%s; want it to say %q", tc.args, err, out, tc.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "khadga-data")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%q left a data directory (%v)", tc.args, err)
		}
	}
}

// TestBackupNamesItsTarget: a backup that cannot be written names the
// file asked for. It named only the temporary file the backup is written
// through (`open /no/such/.khadga-backup-123: no such file or directory`).
func TestBackupNamesItsTarget(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	target := filepath.Join(dir, "no", "such", "dir", "backup.db")
	out, err := run(t, dir, "", "backup", target)
	if err == nil || !strings.Contains(out, "backup to "+target+": ") {
		t.Fatalf("backup into a missing directory: %v\n%s", err, out)
	}
}

// TestRevokeAndRetireNeedTheirID: `khadga token revoke` and `khadga keys
// retire` without the id say that the id is missing and where to find
// it. They said `unexpected arguments ["revoke"]`, as if revoke itself
// were the mistake.
func TestRevokeAndRetireNeedTheirID(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, dir, "a long admin password\n", "user", "add", "root"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "revoke"}, "token revoke: want one token ID (khadga token list shows them)"},
		{[]string{"keys", "retire"}, "keys retire: want one KID (khadga keys list shows them)"},
	} {
		if out, err := run(t, dir, "", tc.args...); err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%q: %v\n%s; want %q", tc.args, err, out, tc.want)
		}
	}
}
