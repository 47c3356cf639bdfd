package hub

import (
	"log/slog"
	"time"
)

// A connection the server closes for what its client did (too many bad
// messages, a message over the read limit, a full send queue) writes a
// line at info that names the user, so that an operator can answer "why
// was this user disconnected?" at the default level. A client may open
// connections and misbehave again as fast as it likes, so the lines
// have a budget: closeLogBurst at once, then one every closeLogEvery,
// the rest at debug (internal/loglimit). Bad messages themselves write
// no line: they are answered, counted (khadga_hub_errors_total) and
// spend the connection's abuse allowance.
const (
	closeLogBurst = 20
	closeLogEvery = 3 * time.Second
)

// whose names the connection's user and session in a log line.
func (c *conn) whose() slog.Attr {
	return slog.Group("", slog.String("user", c.user), slog.String("peer", c.peer()))
}
