package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/internal/config"
	"github.com/khadga/khadga/internal/prompt"
)

// defaultServer is where register and login go without --server:
// $KHADGA_SERVER, else the address `khadga` serves on by default.
func defaultServer() string {
	if s := os.Getenv("KHADGA_SERVER"); s != "" {
		return s
	}
	return "http://127.0.0.1:8080"
}

// account are the settings of register and login.
type account struct {
	common `yaml:",inline"`
	User   string `yaml:"user" env:"KHADGA_USER" usage:"username (default $KHADGA_USER; asked for on a terminal)"`
}

// parse loads cfg, whose account part is a. Without --server it goes to
// defaultServer: unlike the other commands, these have no stored server to
// fall back on. Without a user it asks for one on a terminal.
func (a *account) parse(ctx context.Context, e *env, cfg any, cmd config.Command, args []string) error {
	rest, err := parse(e, cfg, &a.common, 0, cmd, args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fail(exitUsage, "unexpected argument %q", rest[0])
	}
	if a.Server == "" {
		a.Server = defaultServer()
	}
	if a.User == "" && prompt.IsTerminal(e.stdin) {
		u, err := prompt.Line(ctx, e.stdin, e.stderr, "username: ")
		if err != nil {
			return promptFail("username", err)
		}
		a.User = u
	}
	if a.User == "" {
		return fail(exitUsage, "--user is required (or KHADGA_USER)")
	}
	return nil
}

// password is $KHADGA_PASSWORD, or what the person types (twice, when
// choosing it), or the first line of standard input.
func (a *account) password(ctx context.Context, e *env, choosing bool) (string, error) {
	if p := os.Getenv("KHADGA_PASSWORD"); p != "" {
		return p, nil
	}
	read := prompt.Password
	if choosing {
		read = prompt.NewPassword
	}
	p, err := read(ctx, e.stdin, e.stderr, "password for "+a.User+": ")
	if err != nil {
		return "", promptFail("password", err)
	}
	return p, nil
}

// promptFail is the error of a prompt: Ctrl-C at it (ctx cancelled)
// exits 1, as an interrupted command does; anything else (standard input
// ended, two passwords differ) is a usage error.
func promptFail(what string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fail(exitError, "%s: interrupted", what)
	}
	return fail(exitUsage, "%s: %v", what, err)
}

// apiFail turns an error from the server's API into the exit code that
// says what failed (apiExit), with when to retry if the server said.
func apiFail(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		return fail(apiExit(err), "%v (retry after %v)", err, ae.RetryAfter)
	}
	return fail(apiExit(err), "%v", err)
}

// apiExit is the exit code for an error from the server's API: the
// credentials refused (401, 403) exitAuth; the server not reached, rate
// limiting (429) or failing (5xx), all worth trying again later,
// exitConnect; any other refusal (400 and the rest of 4xx: what was asked
// is wrong) exitUsage.
func apiExit(err error) int {
	var ae *client.APIError
	switch {
	case errors.Is(err, client.ErrUnauthorized), errors.Is(err, client.ErrEmailUnverified):
		return exitAuth
	case !errors.As(err, &ae):
		return exitConnect // no answer: unreachable, timed out, cut off
	case ae.Status == http.StatusUnauthorized, ae.Status == http.StatusForbidden:
		return exitAuth
	case ae.Status == http.StatusTooManyRequests, ae.Status/100 == 5:
		return exitConnect
	case ae.Status/100 == 4:
		return exitUsage
	default:
		return exitConnect
	}
}

// registerConfig is the configuration of `khadga-peer register`.
type registerConfig struct {
	account `yaml:",inline"`
	Email   string `yaml:"email" usage:"email address, where the server asks for one"`
}

func runRegister(ctx context.Context, e *env, args []string) error {
	var c registerConfig
	a := &c.account
	if err := a.parse(ctx, e, &c, peerCommand(e, "register", "register --user NAME [--server URL] [--email ADDRESS]",
		"Creates an account and signs in, storing the tokens like login does. The new\npassword (10 characters or more) is asked for twice on a terminal, else read\nfrom the first line of standard input, or from KHADGA_PASSWORD. Where the\nserver checks email addresses it mails a link to open before the first login.",
		"khadga-peer register --server https://khadga.example.org --user alice"), args); err != nil {
		return err
	}
	email := c.Email
	password, err := a.password(ctx, e, true)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	reg, err := client.Register(ctx, hc, a.Server, a.User, password, email)
	if err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			return fail(exitAuth, "the username %s is taken", a.User)
		}
		return apiFail(err)
	}
	if reg.EmailVerification == "sent" {
		fmt.Fprintf(e.stdout, "registered %s; open the link sent to %s, then run: khadga-peer login --server %s --user %s\n", a.User, email, a.Server, a.User)
		return nil
	}
	t, err := client.Login(ctx, hc, a.Server, a.User, password, "")
	if err != nil {
		return apiFail(err)
	}
	return a.save(e, "registered and signed in", t)
}

// loginConfig is the configuration of `khadga-peer login`.
type loginConfig struct {
	account  `yaml:",inline"`
	TOTPCode string `yaml:"totp-code" usage:"second factor: the authenticator app's code or a recovery code"`
}

func runLogin(ctx context.Context, e *env, args []string) error {
	var c loginConfig
	a := &c.account
	if err := a.parse(ctx, e, &c, peerCommand(e, "login", "login --user NAME [--server URL] [--totp-code CODE]",
		"Signs in and stores the tokens in the config dir (file mode 0600). The password\nis asked for on a terminal, else read from the first line of standard input, or\nfrom KHADGA_PASSWORD. An account with two-factor authentication also needs the\ncode from the authenticator app (or a recovery code): --totp-code, or typed at\nthe prompt on a terminal.",
		"echo 'my long password' | khadga-peer login --server https://khadga.example.org --user alice"), args); err != nil {
		return err
	}
	code := c.TOTPCode
	password, err := a.password(ctx, e, false)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	t, err := client.Login(ctx, hc, a.Server, a.User, password, code)
	if errors.Is(err, client.ErrTOTPRequired) && code == "" {
		if !prompt.IsTerminal(e.stdin) {
			return fail(exitAuth, "%s has two-factor authentication: pass --totp-code with the code from the authenticator app", a.User)
		}
		if code, err = prompt.Line(ctx, e.stdin, e.stderr, "code from your authenticator app (or a recovery code): "); err != nil {
			return promptFail("code", err)
		}
		t, err = client.Login(ctx, hc, a.Server, a.User, password, code)
	}
	if errors.Is(err, client.ErrTOTPInvalid) {
		return fail(exitAuth, "that code is wrong or already used")
	}
	if err != nil {
		return apiFail(err)
	}
	return a.save(e, "signed in", t)
}

// save stores the tokens and says where.
func (a *account) save(e *env, what string, t client.Tokens) error {
	dir, err := a.dir()
	if err != nil {
		return err
	}
	if err := saveStore(dir, &store{Server: a.Server, User: a.User, Access: t.Access, Refresh: t.Refresh, Expiry: t.Expiry}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s as %s; tokens in %s\n", what, a.User, filepath.Join(dir, storeFile))
	return nil
}

func runLogout(ctx context.Context, e *env, args []string) error {
	var c common
	rest, err := parse(e, &c, &c, 0, peerCommand(e, "logout", "logout",
		"Revokes the stored refresh token on the server and deletes the stored tokens.",
		"khadga-peer logout"), args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fail(exitUsage, "unexpected arguments %q", rest)
	}
	dir, err := c.dir()
	if err != nil {
		return err
	}
	st, err := loadStore(dir)
	if err != nil {
		return fail(exitAuth, "not signed in: %v", err)
	}
	server := c.Server
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
