// Command khadga-peer is a khadga peer for the terminal: sign in, chat in
// a room, send and receive files, and send or record video, peer to peer.
//
// Run "khadga-peer help" for the commands; every command takes --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, so that scripts can tell what failed.
const (
	exitOK       = 0
	exitError    = 1 // anything else
	exitUsage    = 2 // bad command line
	exitAuth     = 3 // not signed in, or credentials refused (401, 403), also while running
	exitConnect  = 4 // server unreachable, rate limiting (429) or failing (5xx), or joining the room failed
	exitPeer     = 5 // the peer did not show up or connect in time, or a transfer outlasted a given --timeout
	exitTransfer = 6 // a file transfer was rejected, interrupted or corrupt
)

// exitError carries an exit code with an error.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

func fail(code int, format string, args ...any) error {
	return &codeError{code: code, err: fmt.Errorf(format, args...)}
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

var commands = []command{
	{"register", "create an account, sign in and store the tokens", runRegister},
	{"login", "sign in and store the tokens", runLogin},
	{"logout", "revoke and forget the stored tokens", runLogout},
	{"chat", "chat in a room (line based)", runChat},
	{"send", "send a file to a user in a room", runSend},
	{"recv", "receive files in a room", runRecv},
	{"video", "send the test pattern, record received video", runVideo},
}

// env is what commands get from main: streams and the config directory.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configDir      string
}

func main() {
	setGCPercent()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		if err == nil {
			return exitOK
		}
		if errors.Is(err, errHelp) {
			return exitOK
		}
		fmt.Fprintf(e.stderr, "khadga-peer %s: %v\n", c.name, err)
		var ce *codeError
		if errors.As(err, &ce) {
			return ce.code
		}
		return exitError
	}
	fmt.Fprintf(e.stderr, "khadga-peer: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "khadga-peer: a khadga peer for the terminal; chat, files and video go peer to peer.")
	fmt.Fprintln(w, "\nUsage: khadga-peer COMMAND [flags] [args]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, `
Example:
  khadga-peer register --server https://khadga.example.org --user alice
  khadga-peer chat lobby

Run "khadga-peer COMMAND --help" for a command's flags and an example.

Exit codes: 0 ok, 1 error, 2 usage, 3 not signed in or credentials refused
(at the start or while running), 4 server unreachable, rate limiting or failing (try again later) or room
refused, 5 peer not reached, 6 file transfer failed.`)
	fmt.Fprintf(w, `
Garbage collection: khadga-peer runs Go's collector at GOGC=%d, as moving
data through WebRTC allocates a lot and a peer holds little memory; set
the GOGC environment variable to choose otherwise.
`, peerGCPercent)
}
