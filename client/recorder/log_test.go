package recorder

import (
	"log/slog"
	"testing"

	"github.com/khadga/khadga/internal/testlog"
)

// testLogger writes to t.Log, so a test's output shows only its own logs.
func testLogger(t testing.TB) *slog.Logger { return testlog.New(t, slog.LevelDebug) }
