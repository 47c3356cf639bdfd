package loglimit

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/testlog"
)

// TestBudget: a burst of lines at their level, then one per interval;
// the rest at debug, counted in the next line at its level.
func TestBudget(t *testing.T) {
	var buf testlog.Buffer
	clock := time.Unix(1_700_000_000, 0)
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 3, time.Minute)
	l.now = func() time.Time { return clock }
	for range 10 {
		l.Log(slog.LevelInfo, "refused", slog.String("why", "x"))
	}
	if n := strings.Count(buf.String(), "msg=refused"); n != 3 {
		t.Fatalf("%d lines of a burst of 3 at info:\n%s", n, buf.String())
	}
	clock = clock.Add(time.Minute)
	l.Log(slog.LevelInfo, "refused")
	l.Log(slog.LevelInfo, "refused")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[3], "held_back=7") {
		t.Fatalf("after a minute, want one more line saying 7 were held back:\n%s", buf.String())
	}
	clock = clock.Add(time.Hour) // the budget refills to its burst, no more
	for range 5 {
		l.Log(slog.LevelWarn, "refused")
	}
	if n := strings.Count(buf.String(), "msg=refused"); n != 7 {
		t.Fatalf("%d lines, want 4 + a burst of 3:\n%s", n, buf.String())
	}
}
