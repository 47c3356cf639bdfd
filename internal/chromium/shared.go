package chromium

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the browser of this test binary, started by the first Shared.
var shared struct {
	mu      sync.Mutex
	started bool
	b       *Browser
	err     error
}

// Main starts the shared browser, runs the tests and stops the browser. Use
// it as TestMain's body: os.Exit(chromium.Main(m)). A browser that cannot
// start does not stop the run here: each test that needs it skips, or fails
// when Required (see Shared), so the other tests still run.
func Main(m *testing.M) int {
	// Under `go test -list` or a -run that selects nothing, starting the
	// browser would only cost time; the first Shared call starts it instead.
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.b != nil {
		if err := shared.b.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "chromium: close: %v\n", err)
		}
	}
	return code
}

// RequireEnv is the environment variable that, set to 1, makes Shared fail
// a test instead of skipping it when the browser does not start. It is an
// explicit opt-in, not CI=true, which CI systems set for every job; the
// project's CI sets it (.ci/run).
const RequireEnv = "KHADGA_REQUIRE_CHROMIUM"

// Required reports whether the environment requires browser tests to run
// (RequireEnv). A test that starts its own browser fails, rather than
// skips, when it is.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Shared returns the test binary's browser, starting it on first use. When
// Chromium is missing or does not start, the test is skipped, or fails when
// Required, so that CI cannot pass without browser tests.
func Shared(t testing.TB) *Browser {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.started {
		shared.started = true
		shared.b, shared.err = Start(Options{})
	}
	if shared.err != nil {
		if Required() {
			t.Fatalf("browser tests are required (%s=1): %v", RequireEnv, shared.err)
		}
		t.Skipf("skipping browser test: %v", shared.err)
	}
	return shared.b
}
