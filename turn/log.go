package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
	"golang.org/x/time/rate"
)

// levelTrace is below slog's debug, for pion's per-packet trace messages.
const levelTrace = slog.LevelDebug - 4

// Pion's warnings and errors are mostly about one client's traffic ("failed
// to send ChannelData", "no permission"), which a client controls; they are
// rate limited so that none can flood the log.
const (
	pionLogRate  = 10 // records per second, sustained
	pionLogBurst = 50
)

// slogFactory bridges pion's LoggerFactory to slog.
type slogFactory struct {
	log     *slog.Logger
	limiter *rate.Limiter // nil: no limit (tests)
}

func newSlogFactory(log *slog.Logger) slogFactory {
	return slogFactory{log: log, limiter: rate.NewLimiter(pionLogRate, pionLogBurst)}
}

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{f.log.With(slog.String("scope", scope)), f.limiter}
}

// slogLogger maps pion's levels onto slog. Pion logs per-request and
// per-packet events at info and error; they are client behaviour, not
// server faults, so info goes to debug and error to warn, and warnings are
// rate limited.
type slogLogger struct {
	log     *slog.Logger
	limiter *rate.Limiter
}

func (l slogLogger) logf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return // skip the formatting on the hot path
	}
	if level >= slog.LevelWarn && l.limiter != nil && !l.limiter.Allow() {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (l slogLogger) Trace(msg string)                  { l.logf(levelTrace, "%s", msg) }
func (l slogLogger) Tracef(format string, args ...any) { l.logf(levelTrace, format, args...) }
func (l slogLogger) Debug(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l slogLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l slogLogger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l slogLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l slogLogger) Warn(msg string)                   { l.logf(slog.LevelWarn, "%s", msg) }
func (l slogLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l slogLogger) Error(msg string)                  { l.logf(slog.LevelWarn, "%s", msg) }
func (l slogLogger) Errorf(format string, args ...any) { l.logf(slog.LevelWarn, format, args...) }
