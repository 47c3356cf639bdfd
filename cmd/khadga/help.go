package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// overview is what `khadga help` prints: every command, one line each.
const overview = `Usage: khadga COMMAND [flags]

Commands:
  serve              run the server (the default: khadga [flags] is khadga serve [flags])
  turn               run only the TURN server
  turn-credentials   print TURN REST credentials for testing
  turn-secret        rotate the TURN secret kept in the store
  user               manage accounts
  token              mint, list and revoke bot (e.g. recorder) tokens
  keys               list, rotate and retire the token signing keys
  backup             hot copy of the store
  restore            replace the store with a checked backup
  migrate            copy a single-node store into a cluster
  config             print the documented default config file (config example)

With --nats URL[,URL...] khadga runs as a node of a cluster, and the admin
commands, backup and restore work on the cluster's store. Every flag has a
KHADGA_* environment twin: --http is KHADGA_HTTP.

khadga help COMMAND (or khadga COMMAND --help) shows a command's flags.
`

// runHelp prints the overview, or with a command's name that command's
// help.
func runHelp(ctx context.Context, w io.Writer, args []string) error {
	if len(args) == 0 {
		_, err := io.WriteString(w, overview)
		return err
	}
	run, ok := commands[args[0]]
	if !ok {
		return unknownCommand(args[0])
	}
	return run(ctx, []string{"--help"})
}

// unknownCommand names the commands there are.
func unknownCommand(name string) error {
	names := slices.Sorted(maps.Keys(commands))
	return fmt.Errorf("unknown command %q (commands: %s; khadga help describes them)", name, strings.Join(names, ", "))
}
