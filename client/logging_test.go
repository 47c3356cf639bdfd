package client

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/testlog"
)

// TestRoutinePionWarningsAreDebug: the pion warnings every connection may
// log while nothing is wrong go to Debug; other warnings keep their level.
func TestRoutinePionWarningsAreDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelWarn, slog.LevelDebug} {
		var logs testlog.Buffer
		f := NewPionLoggerFactory(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level})))
		f.NewLogger("ice").Warn("Failed to ping without candidate pairs. Connection is not possible yet.")
		f.NewLogger("sctp").Warnf("[%#x] failed to write packets on netConn: %v", 0x3458, "dtls fatal: conn is closed")
		f.NewLogger("dtls").Warnf("handshake failed: %s", "bad certificate")
		got := logs.String()
		lines := strings.Split(strings.TrimSpace(got), "\n")
		if level == slog.LevelWarn {
			if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "bad certificate") {
				t.Errorf("at warn level:\n%s\nwant only the handshake warning", got)
			}
			continue
		}
		if len(lines) != 3 || strings.Count(got, "level=DEBUG") != 2 || !strings.Contains(lines[2], "level=WARN") {
			t.Errorf("at debug level:\n%s\nwant the two routine ones at DEBUG, then the warning", got)
		}
	}
}
