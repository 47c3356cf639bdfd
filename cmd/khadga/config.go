package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
)

// runConfig handles `khadga config example`, which prints every setting of
// `khadga serve` as a commented YAML file: the documented default config.
func runConfig(_ context.Context, args []string) error {
	if len(args) != 1 || args[0] != "example" {
		return errors.New("usage: khadga config example > khadga.yaml")
	}
	fs := flag.NewFlagSet("khadga serve", flag.ContinueOnError)
	serveFlags(fs)
	turnFlags(fs)
	fmt.Fprintln(os.Stdout, "# khadga configuration (khadga serve --config khadga.yaml).")
	fmt.Fprintln(os.Stdout, "# Keys are the flag names; flags and KHADGA_* variables override this file.")
	fmt.Fprintln(os.Stdout, "# Every setting is shown with its default, commented out.")
	exampleConfig(os.Stdout, fs)
	return nil
}
