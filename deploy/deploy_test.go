package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// root is the repository root, relative to this package's directory.
const root = ".."

// readRepoFile reads a file by its path from the repository root.
func readRepoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// binDir holds the binaries the tests build, for the whole test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "khadga-deploy-test-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  string
	flagsOnce sync.Once
	flagNames map[string]bool
	flagsErr  string
)

// binary returns the path of khadga or khadga-healthcheck, built once per
// test run the way the Dockerfile builds them (CGO_ENABLED=0).
func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for bin, pkg := range map[string]string{"khadga": "./cmd/khadga", "khadga-healthcheck": "./deploy/healthcheck"} {
			build := exec.CommandContext(ctx, goTool(), "build", "-o", filepath.Join(binDir, bin), pkg)
			build.Dir = root
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				buildErr = "building " + pkg + ": " + err.Error() + "\n" + string(out)
				return
			}
		}
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// envLine matches the "(env KHADGA_X)" that `khadga config example` writes
// after each flag's description.
var envLine = regexp.MustCompile(`\(env (KHADGA_[A-Z0-9_]+)\)`)

// serveEnvNames returns the KHADGA_* twin of every `khadga serve` flag, as
// the real binary lists them in `khadga config example`.
func serveEnvNames(t *testing.T) map[string]bool {
	t.Helper()
	bin := binary(t, "khadga")
	flagsOnce.Do(func() { flagNames, flagsErr = listEnvNames(bin) })
	if flagsErr != "" {
		t.Fatal(flagsErr)
	}
	return flagNames
}

func listEnvNames(bin string) (map[string]bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, bin, "config", "example")
	run.Env = cleanEnv()
	out, err := run.Output()
	if err != nil {
		return nil, "khadga config example: " + err.Error()
	}
	names := map[string]bool{}
	for _, m := range envLine.FindAllStringSubmatch(string(out), -1) {
		names[m[1]] = true
	}
	if len(names) < 10 {
		return nil, "khadga config example listed only " + strings.Join(sortedKeys(names), ", ")
	}
	return names, ""
}

// cleanEnv is the environment without KHADGA_* variables, so that the
// machine's settings cannot change what the binary prints.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KHADGA_") {
			env = append(env, kv)
		}
	}
	return env
}

// goTool is the go command of the toolchain running this test.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestServeEnvNamesKnown guards the flag list itself: the names the other
// tests check against include the ones deployments depend on.
func TestServeEnvNamesKnown(t *testing.T) {
	names := serveEnvNames(t)
	for _, want := range []string{"KHADGA_HTTP", "KHADGA_DATA", "KHADGA_TURN_PUBLIC_IP", "KHADGA_TURN_PORTS",
		"KHADGA_TURN_LISTEN", "KHADGA_METRICS_TOKEN", "KHADGA_TURN_SECRET", "KHADGA_TLS_CERT", "KHADGA_ACME_DOMAIN"} {
		if !names[want] {
			t.Errorf("khadga config example does not list %s", want)
		}
	}
}

// checkEnvNames fails for every KHADGA_* name in names that is not a
// `khadga serve` flag.
func checkEnvNames(t *testing.T, where string, names []string) {
	t.Helper()
	known := serveEnvNames(t)
	for _, n := range names {
		if strings.HasPrefix(n, "KHADGA_") && !known[n] {
			t.Errorf("%s sets %s, which is not a khadga serve flag", where, n)
		}
	}
}
