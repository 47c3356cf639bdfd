package signaling

import (
	"log/slog"
	"time"

	"github.com/khadga/khadga/internal/loglimit"
)

// Refused requests are logged at info, so that an operator can answer
// "why was this user (or this address) refused?" at the default level,
// within a budget: refusalBurst lines at once, then one every
// refusalEvery, the rest at debug (loglimit). Each reason has its own
// budget, so that a flood of one kind (upgrades from a foreign origin,
// made-up tokens) hides no other.
const (
	refusalBurst = 20
	refusalEvery = 3 * time.Second
)

// refusalLogs are the budgets of the refusals' lines, by reason.
type refusalLogs struct {
	origin *loglimit.Logger // WebSocket upgrades from an origin not allowed
	auth   *loglimit.Logger // WebSocket upgrades without valid credentials
	conns  *loglimit.Logger // WebSocket upgrades past the user's connections
	bot    *loglimit.Logger // bot refresh tokens refused
	login  *loglimit.Logger // sign-ins refused (the audit log has them all)
}

func newRefusalLogs(log *slog.Logger) refusalLogs {
	budget := func() *loglimit.Logger { return loglimit.New(log, refusalBurst, refusalEvery) }
	return refusalLogs{origin: budget(), auth: budget(), conns: budget(), bot: budget(), login: budget()}
}

// maxLoggedHeader is how much of a header a refusal's line quotes: the
// header is the client's to make up, up to the server's 16 KiB.
const maxLoggedHeader = 128

func clip(s string) string {
	if len(s) <= maxLoggedHeader {
		return s
	}
	return s[:maxLoggedHeader] + "…"
}

// loginRefused logs a refused sign-in of user (a well-formed name, or ""
// for one that is not: the audit log's key) from addr. The password and
// code never appear.
func (s *Server) loginRefused(user, addr, reason string) {
	s.refusals.login.Log(slog.LevelInfo, "login refused", slog.String("user", user), slog.String("addr", addr),
		slog.String("reason", reason))
}
