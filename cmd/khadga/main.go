// Command khadga is khadga's server: the signaling service with its embedded
// TURN server, the standalone TURN server, and the admin commands.
//
//	khadga [serve] [flags]     run the server (the default)
//	khadga turn [flags]        run only the TURN server
//	khadga turn-credentials    print TURN REST credentials for testing
//	khadga turn-secret rotate  rotate the TURN secret kept in the store
//	khadga user ...            manage accounts
//	khadga token ...           mint, list and revoke bot (e.g. recorder) tokens
//	khadga keys ...            list, rotate and retire the token signing keys
//	khadga backup FILE         hot copy of the store
//	khadga restore FILE|-      replace the store with a checked backup (- reads standard input)
//	khadga migrate             copy a single-node store into a cluster
//	khadga config example      print the documented default config file
//	khadga help [COMMAND]      list the commands, or show one's flags
//
// With --nats URL[,URL...] khadga runs as a node of a cluster, and the
// admin commands, backup and restore work on the cluster's store.
//
// Every flag has a KHADGA_* environment twin: --http is KHADGA_HTTP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// commands maps each subcommand to its entry point.
var commands = map[string]func(ctx context.Context, args []string) error{
	"serve":            runServe,
	"turn":             runTurn,
	"turn-credentials": runTurnCredentials,
	"user":             runUser,
	"token":            runToken,
	"keys":             runKeys,
	"backup":           runBackup,
	"restore":          runRestore,
	"migrate":          runMigrate,
	"turn-secret":      runTurnSecret,
	"config":           runConfig,
}

func main() {
	args := os.Args[1:]
	name := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	run, ok := commands[name]
	if name == "help" {
		run, ok = func(ctx context.Context, args []string) error { return runHelp(ctx, os.Stdout, args) }, true
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "khadga:", unknownCommand(name))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts a graceful shutdown; dropping the handler then
	// lets a second one kill the process at once.
	go func() { <-ctx.Done(); stop() }()
	if err := run(ctx, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "khadga:", err)
		os.Exit(1)
	}
}
