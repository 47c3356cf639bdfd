package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/khadga/khadga/client"
)

func runLogin(ctx context.Context, e *env, args []string) error {
	var c common
	var user string
	fs := newFlags(e, "login", "login --server URL --user NAME",
		"Signs in and stores the tokens in the config dir (file mode 0600). The password\nis read from the first line of standard input, or from KHADGA_PASSWORD.",
		"echo 'my long password' | khadga-peer login --server https://khadga.example.org --user alice")
	c.register(fs, e, 0)
	fs.StringVar(&user, "user", os.Getenv("KHADGA_USER"), "username")
	if err := parse(fs, args); err != nil {
		return err
	}
	if c.server == "" || user == "" {
		return fail(exitUsage, "--server and --user are required")
	}
	password := os.Getenv("KHADGA_PASSWORD")
	if password == "" {
		fmt.Fprint(e.stderr, "password: ")
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && line == "" {
			return fail(exitUsage, "no password on standard input")
		}
		password = strings.TrimRight(line, "\r\n")
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	t, err := client.Login(ctx, hc, c.server, user, password)
	if err != nil {
		if errors.Is(err, client.ErrUnauthorized) {
			return fail(exitAuth, "%v", err)
		}
		return fail(exitConnect, "%v", err)
	}
	dir, err := c.dir()
	if err != nil {
		return err
	}
	if err := saveStore(dir, &store{Server: c.server, User: user, Access: t.Access, Refresh: t.Refresh, Expiry: t.Expiry}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "signed in as %s; tokens in %s\n", user, filepath.Join(dir, storeFile))
	return nil
}

func runLogout(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlags(e, "logout", "logout", "Revokes the stored refresh token on the server and deletes the stored tokens.",
		"khadga-peer logout")
	c.register(fs, e, 0)
	if err := parse(fs, args); err != nil {
		return err
	}
	dir, err := c.dir()
	if err != nil {
		return err
	}
	st, err := loadStore(dir)
	if err != nil {
		return fail(exitAuth, "not signed in: %v", err)
	}
	server := c.server
	if server == "" {
		server = st.Server
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	rerr := client.Logout(ctx, hc, server, st.Refresh)
	if err := os.Remove(filepath.Join(dir, storeFile)); err != nil {
		return fmt.Errorf("delete tokens: %w", err)
	}
	if rerr != nil {
		fmt.Fprintf(e.stderr, "tokens deleted, but the server did not confirm the logout: %v\n", rerr)
		return fail(exitConnect, "%v", rerr)
	}
	fmt.Fprintln(e.stdout, "signed out")
	return nil
}
