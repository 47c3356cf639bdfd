// Package loglimit bounds the log lines that clients can cause. A server
// must say at its default level why it refused or disconnected someone,
// or an operator cannot answer "why was this user refused?"; but when
// each refusal writes a line, anyone who can send requests can flood the
// log (and the disk, and whatever ships the log) at the rate they send.
//
// A Logger writes a burst of lines at the level asked, then one per
// interval; the lines in between go out at debug level (an operator
// chasing one client can still see them all), and the next line written
// at its level says how many were held back ("held_back").
package loglimit

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Logger is a log with a budget of lines. It is safe for concurrent use.
type Logger struct {
	log   *slog.Logger
	every time.Duration
	burst int
	now   func() time.Time

	mu       sync.Mutex
	left     int       // lines the budget still has
	refilled time.Time // when left last grew
	held     int       // lines held back since the last one written
}

// New returns a Logger writing to log: burst lines at once, then one
// every interval.
func New(log *slog.Logger, burst int, every time.Duration) *Logger {
	return &Logger{log: log, every: every, burst: burst, now: time.Now, left: burst}
}

// Log writes msg with attrs at level if the budget has a line left, with
// the number of lines held back since the last one; otherwise at debug.
func (l *Logger) Log(level slog.Level, msg string, attrs ...slog.Attr) {
	ok, held := l.take()
	if !ok {
		level = slog.LevelDebug
	} else if held > 0 {
		attrs = append(attrs, slog.Int("held_back", held))
	}
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// take spends a line of the budget, and says how many were held back
// before it.
func (l *Logger) take() (ok bool, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if n := int(now.Sub(l.refilled) / l.every); n > 0 {
		l.left = min(l.burst, l.left+n)
		l.refilled = l.refilled.Add(time.Duration(n) * l.every)
	}
	if l.left == 0 {
		l.held++
		return false, 0
	}
	if l.left == l.burst {
		l.refilled = now // a full budget does not bank time
	}
	l.left--
	held, l.held = l.held, 0
	return true, held
}
