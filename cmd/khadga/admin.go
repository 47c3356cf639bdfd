package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/khadga/khadga/internal/prompt"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// adminFlags are shared by the admin commands: where the data is.
type adminFlags struct {
	dataDir string
	socket  string
}

func addAdminFlags(fs *flag.FlagSet) *adminFlags {
	a := &adminFlags{}
	fs.StringVar(&a.dataDir, "data", "khadga-data", "data directory of the server")
	fs.StringVar(&a.socket, "admin-socket", "", "admin socket of a running server (default DATA/admin.sock)")
	return a
}

// open reaches the store: through the running server's admin socket if there
// is one, else by opening the file (the server is stopped).
func (a *adminFlags) open() (admin.Admin, func(), error) {
	sock := a.socket
	if sock == "" {
		sock = filepath.Join(a.dataDir, "admin.sock")
	}
	if c, err := admin.Dial(sock); err == nil {
		return c, func() {}, nil
	}
	st, err := store.Open(filepath.Join(a.dataDir, "khadga.db"), store.Options{Timeout: 2 * time.Second})
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
	ops := &admin.Ops{Store: st, Keys: keys, Audit: func(kind, user, detail string) {
		st.Audit(store.AuditEvent{Time: time.Now().UTC(), Kind: kind, User: user, Addr: "cli", Detail: detail})
	}}
	return ops, func() { st.Close() }, nil
}

func runUser(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("khadga user", flag.ContinueOnError)
	fs.Usage = usage(fs, "khadga user list|add NAME|delete NAME|disable NAME|enable NAME|role NAME ROLE|reset-totp NAME [flags]",
		"Manage accounts, through the running server's admin socket or, when it is stopped, the store file.",
		"khadga user add alice --role admin     # asks for the password (twice) on a terminal; a pipe gives one line")
	a := addAdminFlags(fs)
	role := fs.String("role", proto.RoleUser, "role for add: user or admin")
	password := fs.String("password", "-", "password for add; - asks on a terminal (without echo), or reads one line of standard input")
	if err := parseFlags(fs, reorder(args)); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("user: missing subcommand")
	}
	adm, closeFn, err := a.open()
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
		fmt.Fprintln(w, "NAME\tROLE\tDISABLED\tCREATED")
		for _, u := range us {
			fmt.Fprintf(w, "%s\t%s\t%t\t%s\n", u.Name, u.Role, u.Disabled, u.Created.Format(time.RFC3339))
		}
		return w.Flush()
	case "add":
		if err := need(2); err != nil {
			return err
		}
		pw, err := readPassword(*password, os.Stdin, os.Stderr, rest[1])
		if err != nil {
			return err
		}
		return adm.AddUser(ctx, rest[1], pw, *role)
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
	pw, err := prompt.NewPassword(in, out, "password for "+user+": ")
	if err != nil {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	return pw, nil
}

func runToken(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("khadga token", flag.ContinueOnError)
	fs.Usage = usage(fs, "khadga token --user NAME [--role recorder --room ROOM] [--ttl 24h]",
		"Mint an access token for a bot. The recorder role can only be had this way.",
		"khadga token --user rec --role recorder --room lab --ttl 24h")
	a := addAdminFlags(fs)
	var req admin.TokenRequest
	var rooms listFlag
	fs.StringVar(&req.User, "user", "", "user name the token is for")
	fs.StringVar(&req.Role, "role", proto.RoleUser, "role: user, admin or recorder")
	fs.Var(&rooms, "room", "room the token may join (repeatable; required for recorder)")
	fs.DurationVar(&req.TTL, "ttl", 24*time.Hour, "lifetime (at most 720h)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	req.Rooms = rooms
	adm, closeFn, err := a.open()
	if err != nil {
		return err
	}
	defer closeFn()
	tok, err := adm.MintToken(ctx, req)
	if err != nil {
		return err
	}
	fmt.Println(tok.Token)
	fmt.Fprintf(os.Stderr, "expires %s\n", tok.Expires.Format(time.RFC3339))
	return nil
}

func runBackup(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("khadga backup", flag.ContinueOnError)
	fs.Usage = usage(fs, "khadga backup FILE|-", "Write a consistent copy of the store, even while the server runs (- writes to standard output).",
		"khadga backup /var/backups/khadga-$(date +%F).db")
	a := addAdminFlags(fs)
	if err := parseFlags(fs, reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("backup: want one FILE")
	}
	adm, closeFn, err := a.open()
	if err != nil {
		return err
	}
	defer closeFn()
	write := func(w io.Writer) error {
		_, err := adm.Backup(ctx, w)
		return err
	}
	if fs.Arg(0) == "-" {
		return write(os.Stdout) // for `kubectl exec ... khadga backup - > backup.db`
	}
	return writeFileAtomic(fs.Arg(0), write)
}

// writeFileAtomic writes through a temporary file renamed into place, so a
// failure never leaves a truncated file at path.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".khadga-backup-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// reorder moves flags before positional arguments, so that
// `khadga user add alice --role admin` works like `--role admin add alice`.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) && !isBoolFlag(a) {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}

// isBoolFlag reports whether a takes no value: only help does among the
// admin commands' flags.
func isBoolFlag(a string) bool {
	switch strings.TrimLeft(a, "-") {
	case "h", "help":
		return true
	}
	return false
}

func runRestore(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("khadga restore", flag.ContinueOnError)
	fs.Usage = usage(fs, "khadga restore FILE", "Replace the store with a backup after checking it. The server must be stopped.",
		"khadga restore /var/backups/khadga-2026-11-27.db")
	a := addAdminFlags(fs)
	if err := parseFlags(fs, reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("restore: want one FILE")
	}
	info, err := store.Check(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("restore: the backup is not usable, nothing was changed: %w", err)
	}
	live := filepath.Join(a.dataDir, "khadga.db")
	// Holding the live store proves the server is stopped while we swap it.
	st, err := store.Open(live, store.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer st.Close()
	src, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(a.dataDir, 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(live, func(w io.Writer) error { _, err := io.Copy(w, src); return err }); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(os.Stderr, "restored %s (schema %d, %d users)\n", fs.Arg(0), info.Version, info.Users)
	return nil
}
