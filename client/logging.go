package client

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// LevelTrace is the slog level pion's trace messages are logged at. It sits
// below slog.LevelDebug so that a debug handler still hides them.
const LevelTrace = slog.LevelDebug - 4

// NewPionLoggerFactory bridges pion's logging into log. Each pion scope
// ("ice", "dtls", "pc", ...) becomes a "pion" attribute. Pion's Info
// messages are routine connection chatter, so they are logged at Debug;
// warnings and errors keep their level.
func NewPionLoggerFactory(log *slog.Logger) logging.LoggerFactory {
	return pionFactory{log: log}
}

type pionFactory struct{ log *slog.Logger }

func (f pionFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With(slog.String("pion", scope))}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	msg := fmt.Sprintf(format, lockedArgs(args)...)
	if level > slog.LevelDebug && routine(msg) {
		if level = slog.LevelDebug; !l.log.Enabled(ctx, level) {
			return
		}
	}
	l.log.Log(ctx, level, msg)
}

// routineWarnings are pion warnings that every connection may log while
// nothing is wrong, at a level users see by default: an ICE agent that
// starts checking before the other side's candidates arrived (trickle
// ICE), and SCTP writing after the peer closed the connection. They are
// logged at Debug. A pion release that words them otherwise only makes
// them visible again.
var routineWarnings = []string{
	"Failed to ping without candidate pairs",
	"failed to write packets on netConn: dtls fatal: conn is closed",
}

func routine(msg string) bool {
	for _, w := range routineWarnings {
		if strings.Contains(msg, w) {
			return true
		}
	}
	return false
}

// lockedArgs replaces each remote track among a log call's arguments with
// a summary read through the track's own (locked) getters. pion logs "got
// new track: %+v" with the *TrackRemote itself (PeerConnection.onTrack),
// and fmt reading the track's fields without its lock races with a
// renegotiation that sets them (the race detector caught it in a test
// with debug logging on).
func lockedArgs(args []any) []any {
	for i, a := range args {
		if t, ok := a.(*webrtc.TrackRemote); ok && t != nil {
			args[i] = fmt.Sprintf("{ID:%s StreamID:%s Kind:%s SSRC:%d RID:%s Codec:%s}",
				t.ID(), t.StreamID(), t.Kind(), t.SSRC(), t.RID(), t.Codec().MimeType)
		}
	}
	return args
}

func (l pionLogger) Trace(msg string)                  { l.logf(LevelTrace, "%s", msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.logf(LevelTrace, format, args...) }
func (l pionLogger) Debug(msg string)                  { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Info(msg string)                   { l.logf(slog.LevelDebug, "%s", msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.logf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.logf(slog.LevelWarn, "%s", msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.logf(slog.LevelWarn, format, args...) }
func (l pionLogger) Error(msg string)                  { l.logf(slog.LevelError, "%s", msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.logf(slog.LevelError, format, args...) }
