package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestNoRealVariableLooksMisspelt: a KHADGA_* variable near a setting's
// is reported as a likely typo (package config), so no variable the
// project itself uses (in the docs, compose files, scripts, tests; of any
// khadga command, khadga-peer or the deployments) may be taken for one.
func TestNoRealVariableLooksMisspelt(t *testing.T) {
	names := map[string]bool{}
	re := regexp.MustCompile(`KHADGA_[A-Z0-9_]*\*?`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == ".git" || n == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > 1<<20 {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAll(b, -1) {
			names[string(m)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for n := range names {
		// A prefix (KHADGA_PEER_, KHADGA_PEER_*), and the docs' example
		// of a typo.
		if strings.HasSuffix(n, "_") || strings.HasSuffix(n, "*") || n == "KHADGA_HTPP" {
			delete(names, n)
		}
	}
	if len(names) < 20 {
		t.Fatalf("found only %d KHADGA_ variables in the repository", len(names))
	}
	var env []string
	for n := range names {
		env = append(env, n+"=x")
	}
	slices.Sort(env)
	cmd := command("khadga test", "", "", "")
	for _, cfg := range []any{&serveConfig{}, &turnCommandConfig{}, &credentialsConfig{}, &userConfig{},
		&tokenConfig{}, &adminConfig{}, &migrateConfig{}} {
		for _, w := range cmd.Misspelt(cfg, env) {
			t.Errorf("%T: %s", cfg, w)
		}
	}
}
