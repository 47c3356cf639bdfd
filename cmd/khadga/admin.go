package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/khadga/khadga/internal/prompt"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/cluster"
	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/signaling/store/kvstore"
)

// adminSocketName is the admin socket's file in the data directory.
const adminSocketName = "admin.sock"

// adminConfig are the settings every admin command has: where the data is.
type adminConfig struct {
	Data   string     `yaml:"data" default:"khadga-data" usage:"data directory of the server"`
	Socket string     `yaml:"admin-socket" usage:"admin socket of a running server (default DATA/admin.sock)"`
	NATS   natsConfig `yaml:",inline"`
}

// open reaches the store: with --nats the cluster's, else through the
// running server's admin socket if there is one, else by opening the file
// (the server is stopped). Every command but user add, which may set up a
// new store with a first admin, passes existing: it refuses a data
// directory without a store, where opening would make an empty one, and
// a backup or a list of it would look fine.
func (a *adminConfig) open(existing bool) (admin.Admin, func(), error) {
	if a.NATS.enabled() {
		return a.openCluster()
	}
	sock := a.socket()
	if c, err := admin.Dial(sock); err == nil {
		return c, func() {}, nil
	}
	if existing {
		if err := mustExist(a.storePath()); err != nil {
			return nil, nil, err
		}
	}
	st, err := store.Open(a.storePath(), store.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, store.ErrInUse) {
			return nil, nil, fmt.Errorf("the store is in use but the admin socket %s does not answer: %w", sock, err)
		}
		return nil, nil, err
	}
	keys, err := auth.NewKeys(st, auth.KeysOptions{})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	bots := auth.NewBots(st, keys, auth.BotsOptions{})
	ops := &admin.Ops{Store: st, Keys: keys, Bots: bots, Audit: func(kind, user, detail string) {
		st.Audit(store.AuditEvent{Time: time.Now().UTC(), Kind: kind, User: user, Addr: "cli", Detail: detail})
	}}
	return ops, func() { st.Close() }, nil
}

// openCluster runs the admin operations on the cluster's store; the
// sessions they end, they end on every node.
func (a *adminConfig) openCluster() (admin.Admin, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), natsOpenWait)
	defer cancel()
	ns, err := a.NATS.open(ctx, "khadga admin", adminLogger(), nil, kvstore.SchemaSame)
	if err != nil {
		return nil, nil, err
	}
	keys, err := auth.NewKeys(ns.store, auth.KeysOptions{})
	if err != nil {
		ns.close()
		return nil, nil, err
	}
	ops := &admin.Ops{Store: ns.store, Keys: keys, Bots: auth.NewBots(ns.store, keys, auth.BotsOptions{}),
		Audit: func(kind, user, detail string) {
			ns.store.Audit(store.AuditEvent{Time: time.Now().UTC(), Kind: kind, User: user, Addr: "cli", Detail: detail})
		},
		Revoked: func(user, login, reason string) {
			if err := cluster.Revoke(ns.conn.NATS(), a.NATS.Subject, user, login, proto.CodeRevoked, reason); err != nil {
				fmt.Fprintf(os.Stderr, "could not tell the nodes to end %s's sessions: %v\n", user, err)
			}
		},
	}
	return ops, ns.close, nil
}

// openStore opens the store itself, not the admin operations: the
// cluster's with --nats, else the file of a stopped server.
func (a *adminConfig) openStore(ctx context.Context) (store.Backend, func(), error) {
	if a.NATS.enabled() {
		ctx, cancel := context.WithTimeout(ctx, natsOpenWait)
		defer cancel()
		ns, err := a.NATS.open(ctx, "khadga admin", adminLogger(), nil, kvstore.SchemaSame)
		if err != nil {
			return nil, nil, err
		}
		return ns.store, ns.close, nil
	}
	st, err := store.Open(a.storePath(), store.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	return st, func() { st.Close() }, nil
}

// adminLogger shows the admin commands' warnings (NATS not reachable yet).
func adminLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// socket is the running server's admin socket.
func (a *adminConfig) socket() string {
	if a.Socket != "" {
		return a.Socket
	}
	return filepath.Join(a.Data, adminSocketName)
}

// mustExist refuses a store file that is not there, naming where it was
// looked for.
func mustExist(path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no store at %s and no server's admin socket beside it: give --data the server's data directory (or --nats for a cluster)", path)
	}
	return nil
}

// storePath is the store file in the data directory, where the server has it.
func (a *adminConfig) storePath() string { return signaling.Config{DataDir: a.Data}.StorePath() }

// userConfig is the configuration of `khadga user`.
type userConfig struct {
	Admin    adminConfig `yaml:",inline"`
	Role     string      `yaml:"role" default:"user" usage:"role for add: user or admin"`
	Password string      `yaml:"password" default:"-" usage:"password for add and passwd; - asks on a terminal (without echo), or reads one line of standard input"`
}

var userCommand = command("khadga user",
	"khadga user list|add NAME|passwd NAME|delete NAME|disable NAME|enable NAME|role NAME ROLE|reset-totp NAME [flags]",
	"Manage accounts, through the running server's admin socket or, when it is stopped, the store file.\n"+
		"passwd sets a new password and ends the user's sign-ins; disable ends every session of the user at once.",
	"khadga user add alice --role admin     # asks for the password (twice) on a terminal; a pipe gives one line")

func runUser(ctx context.Context, args []string) error {
	var c userConfig
	rest, err := load(&c, userCommand, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return errors.New("user: missing subcommand (khadga user --help lists them)")
	}
	// A bad name or role is refused before the password is asked for
	// and before add makes a store, perhaps in a mistyped --data.
	if rest[0] == "add" && len(rest) == 2 {
		if err := admin.CheckNewUser(rest[1], c.Role); err != nil {
			return err
		}
	}
	a := &c.Admin
	// Only add may make the store: a first admin account before the
	// server's first start. Anything else on a mistyped --data would
	// leave an empty store there and say "not found" or list nobody.
	adm, closeFn, err := a.open(rest[0] != "add")
	if err != nil {
		return err
	}
	defer closeFn()
	need := func(n int) error {
		if len(rest) != n {
			return fmt.Errorf("user %s: want %d argument(s), got %d", rest[0], n-1, len(rest)-1)
		}
		return nil
	}
	switch rest[0] {
	case "list":
		us, err := adm.ListUsers(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tROLE\tDISABLED\t2FA\tEMAIL\tCREATED")
		for _, u := range us {
			role := u.Role
			if u.Bot {
				role = "(bot's name)"
			}
			fmt.Fprintf(w, "%s\t%s\t%t\t%s\t%s\t%s\n", u.Name, role, u.Disabled, onOff(u.TwoFactor), emailColumn(u), u.Created.Format(time.RFC3339))
		}
		return w.Flush()
	case "add":
		if err := need(2); err != nil {
			return err
		}
		pw, err := readPassword(c.Password, os.Stdin, os.Stderr, rest[1])
		if err != nil {
			return err
		}
		return adm.AddUser(ctx, rest[1], pw, c.Role)
	case "passwd":
		if err := need(2); err != nil {
			return err
		}
		pw, err := readPassword(c.Password, os.Stdin, os.Stderr, rest[1])
		if err != nil {
			return err
		}
		return adm.SetPassword(ctx, rest[1], pw)
	case "delete":
		if err := need(2); err != nil {
			return err
		}
		return adm.DeleteUser(ctx, rest[1])
	case "disable", "enable":
		if err := need(2); err != nil {
			return err
		}
		return adm.SetDisabled(ctx, rest[1], rest[0] == "disable")
	case "role":
		if err := need(3); err != nil {
			return err
		}
		return adm.SetRole(ctx, rest[1], rest[2])
	case "reset-totp":
		if err := need(2); err != nil {
			return err
		}
		return adm.ResetTOTP(ctx, rest[1])
	}
	return fmt.Errorf("user: unknown subcommand %q", rest[0])
}

// readPassword returns v, or when v is "-" the password for user typed at
// the terminal (twice, without echo) or one line of in.
func readPassword(v string, in io.Reader, out io.Writer, user string) (string, error) {
	if v != "-" {
		return v, nil
	}
	pw, err := prompt.NewPassword(context.Background(), in, out, "password for "+user+": ")
	if err != nil {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	return pw, nil
}

// tokenConfig is the configuration of `khadga token`.
type tokenConfig struct {
	Admin   adminConfig   `yaml:",inline"`
	User    string        `yaml:"user" usage:"user name the token is for"`
	Role    string        `yaml:"role" default:"user" usage:"role: user, admin or recorder"`
	Rooms   []string      `yaml:"room" usage:"room the token may join (repeatable; required for recorder)"`
	Refresh bool          `yaml:"refresh" usage:"mint a refresh token, which the bot trades for short access tokens as long as it lives, instead of an access token"`
	TTL     time.Duration `yaml:"ttl" usage:"lifetime: an access token 24h by default, at most 720h; a refresh token 2160h (90 days) by default, at most 8760h"`
	Share   bool          `yaml:"share-account" usage:"let the bot go by the name of an existing account, sharing its connection limit (refused otherwise)"`
}

var tokenCommand = command("khadga token",
	"khadga token --user NAME [--role recorder --room ROOM] [--refresh] [--ttl D] | khadga token list | khadga token revoke [--] ID",
	"Mint a bot token (the recorder role can only be had this way), list the tokens minted, or revoke one.\n"+
		"A revoked token works no more, and the sessions it opened end at once.",
	"khadga token --user rec --role recorder --room lab --refresh > rec.token")

func runToken(ctx context.Context, args []string) error {
	var c tokenConfig
	rest, err := load(&c, tokenCommand, args)
	if err != nil {
		return err
	}
	// A token minted into a store no server uses (a mistyped --data) would
	// be refused by the real one.
	adm, closeFn, err := c.Admin.open(true)
	if err != nil {
		return err
	}
	defer closeFn()
	switch {
	case len(rest) == 0:
		return mintToken(ctx, adm, &c)
	case rest[0] == "list" && len(rest) == 1:
		ts, err := adm.ListTokens(ctx)
		if err != nil {
			return err
		}
		return printTokens(os.Stdout, ts, time.Now())
	case rest[0] == "revoke" && len(rest) == 2:
		if err := adm.RevokeToken(ctx, rest[1]); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "revoked %s\n", rest[1])
		return nil
	case rest[0] == "revoke":
		return errors.New("token revoke: want one token ID (khadga token list shows them)")
	}
	return fmt.Errorf("token: unexpected arguments %q (khadga token --help)", rest)
}

func mintToken(ctx context.Context, adm admin.Admin, c *tokenConfig) error {
	tok, err := adm.MintToken(ctx, admin.TokenRequest{User: c.User, Role: c.Role, Rooms: c.Rooms, TTL: c.TTL, Refresh: c.Refresh, ShareAccount: c.Share})
	if err != nil {
		return err
	}
	fmt.Println(tok.Token)
	fmt.Fprintf(os.Stderr, "id %s, expires %s\n", tok.ID, tok.Expires.Format(time.RFC3339))
	return nil
}

// printTokens writes the `khadga token list` table.
func printTokens(out io.Writer, ts []admin.TokenInfo, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSER\tROLE\tROOMS\tKIND\tEXPIRES\tSTATE\tLAST USED")
	for _, t := range ts {
		state := "active"
		switch {
		case !t.Revoked.IsZero():
			state = "revoked " + t.Revoked.Format(time.RFC3339)
		case !now.Before(t.Expires):
			state = "expired"
		}
		used := "-"
		if !t.LastUsed.IsZero() {
			used = t.LastUsed.Format(time.RFC3339)
		}
		rooms := strings.Join(t.Rooms, ",")
		if rooms == "" {
			rooms = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.User, t.Role, rooms, t.Kind,
			t.Expires.Format(time.RFC3339), state, used)
	}
	return w.Flush()
}

var keysCommand = command("khadga keys", "khadga keys list|rotate|retire [--] KID",
	"Manage the keys that sign access tokens. rotate signs with a new key from now on; the old one keeps\n"+
		"verifying until every token it signed has expired, so nobody is signed out. retire stops a key at once\n"+
		"(a leaked key): its tokens are refused and the sessions they opened end.",
	"khadga keys rotate")

func runKeys(ctx context.Context, args []string) error {
	var a adminConfig
	rest, err := load(&a, keysCommand, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return errors.New("keys: missing subcommand (khadga keys --help lists them)")
	}
	adm, closeFn, err := a.open(true)
	if err != nil {
		return err
	}
	defer closeFn()
	switch {
	case rest[0] == "list" && len(rest) == 1:
		ks, err := adm.ListKeys(ctx)
		if err != nil {
			return err
		}
		return printKeys(os.Stdout, ks, time.Now())
	case rest[0] == "rotate" && len(rest) == 1:
		kid, err := adm.RotateKey(ctx)
		if err != nil {
			return err
		}
		fmt.Println(kid)
		return nil
	case rest[0] == "retire" && len(rest) == 2:
		return adm.RetireKey(ctx, rest[1])
	case rest[0] == "retire":
		return errors.New("keys retire: want one KID (khadga keys list shows them)")
	}
	return fmt.Errorf("keys: unexpected arguments %q (khadga keys --help)", rest)
}

// printKeys writes the `khadga keys list` table.
func printKeys(out io.Writer, ks []auth.KeyInfo, now time.Time) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KID\tCREATED\tSTATE")
	for _, k := range ks {
		state := "verifying until " + k.RetireAt.Format(time.RFC3339)
		switch {
		case k.Retired || (!k.RetireAt.IsZero() && !now.Before(k.RetireAt)):
			state = "retired"
		case k.Signing:
			state = "signing"
		case k.RetireAt.IsZero():
			state = "verifying"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", k.ID, k.Created.Format(time.RFC3339), state)
	}
	return w.Flush()
}

var backupCommand = command("khadga backup", "khadga backup FILE|-",
	"Write a consistent copy of the store, even while the server runs (- writes to standard output).",
	"khadga backup /var/backups/khadga-$(date +%F).db")

func runBackup(ctx context.Context, args []string) error {
	var a adminConfig
	rest, err := load(&a, backupCommand, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("backup: want one FILE (khadga backup --help)")
	}
	// The store's bytes, password hashes and keys among them, belong in a
	// file, not on a screen (or in its scrollback).
	if rest[0] == "-" && prompt.IsTerminal(os.Stdout) {
		return errors.New("backup: standard output is a terminal: redirect it (khadga backup - > backup.db)")
	}
	adm, closeFn, err := a.open(true)
	if err != nil {
		return err
	}
	defer closeFn()
	write := func(w io.Writer) error {
		_, err := adm.Backup(ctx, w)
		return err
	}
	if rest[0] == "-" {
		return write(os.Stdout) // for `kubectl exec ... khadga backup - > backup.db`
	}
	// store.WriteFile's own errors name the temporary file it writes
	// through; the operator gave this name.
	if err := store.WriteFile(rest[0], write); err != nil {
		return fmt.Errorf("backup to %s: %w", rest[0], err)
	}
	return nil
}

var restoreCommand = command("khadga restore", "khadga restore FILE|-",
	"Replace the store with a backup after checking it (- reads it from standard input). The server must be stopped; "+
		"with --nats the cluster's data is replaced instead, while the nodes run: they follow at once (they watch the "+
		"signing keys and TURN secrets).",
	"khadga restore /var/backups/khadga-2026-11-27.db")

func runRestore(ctx context.Context, args []string) error {
	var a adminConfig
	rest, err := load(&a, restoreCommand, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("restore: want one FILE (khadga restore --help)")
	}
	backup, name := rest[0], rest[0]
	if backup == "-" {
		// Into the data directory, the store's own file system, unless the
		// data goes to the cluster.
		dir := a.Data
		if a.NATS.enabled() {
			dir = os.TempDir()
		}
		if backup, err = spoolStdin(dir); err != nil {
			return fmt.Errorf("restore: %w; nothing was changed", err)
		}
		defer os.Remove(backup)
		name = "the backup from standard input"
	}
	if err := readable(backup); err != nil {
		return fmt.Errorf("restore: cannot read the backup, nothing was changed: %w", err)
	}
	info, err := store.Check(backup)
	if err != nil {
		return fmt.Errorf("restore: the backup is not usable, nothing was changed: %w", err)
	}
	if a.NATS.enabled() {
		return restoreCluster(ctx, &a, backup, name, info)
	}
	if _, err := admin.Dial(a.socket()); err == nil {
		// A server runs on this data directory. A single node holds the
		// store's lock too, but a cluster node keeps its data in NATS: the
		// file swapped here would change nothing.
		return errors.New("restore: a server answers on the admin socket " + a.socket() +
			": stop it first, or, for a cluster node, restore into the cluster with --nats")
	}
	kept, err := store.Replace(a.storePath(), backup, 2*time.Second)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(os.Stderr, "restored %s (schema %d, %d users)\n", name, info.Version, info.Users)
	if kept != "" {
		fmt.Fprintf(os.Stderr, "the store it replaced is kept as %s (mode 0600, with its password hashes and keys): delete it once the restore is good\n", kept)
	}
	return nil
}

// spoolStdin copies standard input into a new file in dir (made if
// missing) and returns its path, for `khadga restore -`: a backup piped
// in (`docker compose run -T ... restore - < backup.db`) needs no copy
// into the container, whose user could not read a file copied there
// (khadga backup writes 0600). The caller removes the file.
func spoolStdin(dir string) (string, error) {
	// A terminal, not any character device: /dev/null is one too.
	if prompt.IsTerminal(os.Stdin) {
		return "", errors.New("standard input is a terminal: pipe the backup in (khadga restore - < backup.db)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".khadga-restore-*") // 0600
	if err != nil {
		return "", err
	}
	n, err := io.Copy(f, os.Stdin)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n == 0 {
		err = errors.New("standard input is empty: pipe the backup in (khadga restore - < backup.db)")
	} else if err != nil {
		err = fmt.Errorf("reading standard input: %w", err)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// readable says why path cannot be read, if it cannot. The store's check
// would report an unreadable file as a bad one ("not usable"), which sends
// an operator after a corrupt backup instead of its permissions.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w (it must be readable by uid %d; or pipe it in: khadga restore - < FILE)", err, os.Getuid())
		}
		return err
	}
	return f.Close()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// emailColumn is the address of u with whether it was confirmed, or "-".
func emailColumn(u admin.UserInfo) string {
	switch {
	case u.Email == "":
		return "-"
	case u.EmailConfirmed:
		return u.Email
	}
	return u.Email + " (unconfirmed)"
}
