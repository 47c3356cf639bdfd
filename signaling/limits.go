package signaling

import (
	"encoding/json"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
)

// The limits that count per client address or per account (failed logins,
// registrations, verification and reset emails, room changes) are one
// budget across a cluster, not one per node: behind a load balancer a
// client's requests land on every node, and with a budget per node three
// nodes would give a password guesser three times the guesses. Each node
// counts in its own limiters, as a single node does, and tells the others
// what it counted (cluster.Node.Tell); they count it too. News takes a
// few milliseconds, so requests at the same moment on different nodes may
// pass together; what they overspend, up to one burst, is taken from what
// comes next (auth.RateLimiter.TakenElsewhere). Login attempts in flight
// are told too, when they start and when they end, so that guesses fired
// in parallel at several nodes are counted as one node counts them
// (auth.LoginLimiter.Elsewhere). A node that starts knows nothing of
// what was counted before, as a single node after a restart.

// limitsTopic is the cluster topic of the limiters' news.
const limitsTopic = "limits"

// limitNews is one count a node tells the others.
type limitNews struct {
	Limiter string       `json:"l"`           // a rate limiter's name, or "login"
	Key     string       `json:"k,omitempty"` // the rate limiter's key
	Addr    string       `json:"a,omitempty"` // login: the client's address
	User    string       `json:"u,omitempty"` // login: the account
	Outcome auth.Outcome `json:"o,omitempty"` // login: what became of the attempt
}

// loginLimits is the login limiter, whose attempts the cluster hears of:
// each one it lets through, and what became of it.
type loginLimits struct {
	*auth.LoginLimiter
	tell func(limitNews)
}

func (l loginLimits) Check(addr, user string, now time.Time) (delay, retryAfter time.Duration) {
	delay, retryAfter = l.LoginLimiter.Check(addr, user, now)
	if retryAfter == 0 {
		l.told(addr, user, auth.Started)
	}
	return delay, retryAfter
}

func (l loginLimits) Failure(addr, user string, now time.Time) {
	l.LoginLimiter.Failure(addr, user, now)
	l.told(addr, user, auth.Failed)
}

func (l loginLimits) Success(addr, user string, now time.Time) {
	l.LoginLimiter.Success(addr, user, now)
	l.told(addr, user, auth.Succeeded)
}

func (l loginLimits) Cancel(addr, user string, now time.Time) {
	l.LoginLimiter.Cancel(addr, user, now)
	l.told(addr, user, auth.Cancelled)
}

func (l loginLimits) told(addr, user string, o auth.Outcome) {
	l.tell(limitNews{Limiter: "login", Addr: addr, User: user, Outcome: o})
}

// Store writes that a signed-in user can repeat without a password, and
// so without the login limits and the password hashing's gate: a refresh
// (per sign-in) and a two-factor enrolment (per user). Each is a
// synced write, and the store has one writer: unlimited, one user's loop
// would slow every sign-in on the server. A sign-in refreshes every 12
// minutes or so, and once more for each page load or reconnect: a burst
// of accountWriteBurst, then accountWritesPerHour, is far above that.
const (
	accountWriteBurst    = 20
	accountWritesPerHour = 60
)

// rateLimit is a rate limiter whose allowed actions the cluster hears of.
type rateLimit struct {
	*auth.RateLimiter
	name string
	tell func(limitNews)
}

func (l rateLimit) Allow(key string, now time.Time) (bool, time.Duration) {
	ok, retry := l.RateLimiter.Allow(key, now)
	if ok {
		l.tell(limitNews{Limiter: l.name, Key: key})
	}
	return ok, retry
}

// newLimits makes the server's limiters, and has the cluster's news of
// them counted here.
func (s *Server) newLimits() {
	s.limiter = loginLimits{auth.NewLoginLimiter(s.cfg.LoginLimits), s.tellLimit}
	rate := func(name string, perSecond float64, burst int) rateLimit {
		return rateLimit{auth.NewRateLimiter(perSecond, burst, 100_000), name, s.tellLimit}
	}
	s.registers = rate("register", float64(s.cfg.RegistrationsPerHour)/3600, s.cfg.RegistrationsPerHour)
	s.resends = rate("resend", 1.0/resendEvery, resendBurst)
	s.resetAsks = rate("reset-ask", 1.0/resetAskEvery, resetAskBurst)
	s.resetFails = rate("reset-fail", 1.0/resetFailEvery, resetFailBurst)
	s.roomWrites = rate("room-write", roomWritesPerHour/3600.0, roomWriteBurst)
	s.refreshes = rate("refresh", accountWritesPerHour/3600.0, accountWriteBurst)
	s.enrolls = rate("totp-enroll", accountWritesPerHour/3600.0, accountWriteBurst)
	if s.cfg.Cluster != nil {
		s.cfg.Cluster.Listen(limitsTopic, s.heardLimit)
	}
}

// tellLimit tells the other nodes of a count; on one node it does nothing.
func (s *Server) tellLimit(n limitNews) {
	if s.cfg.Cluster == nil {
		return
	}
	b, err := json.Marshal(n)
	if err == nil && s.cfg.Cluster.Tell(limitsTopic, b) {
		s.metrics.limitNews.WithLabelValues("told").Inc()
		return
	}
	s.metrics.limitNews.WithLabelValues("untold").Inc()
}

// heardLimit counts here what another node counted. News that names no
// limiter this node has, or a key no request could make, is dropped.
func (s *Server) heardLimit(b []byte) {
	var n limitNews
	if json.Unmarshal(b, &n) != nil || len(n.Key) > maxNewsKey || len(n.Addr) > maxNewsKey || !validNewsUser(n.User) ||
		n.Outcome < auth.Started || n.Outcome > auth.Cancelled {
		s.metrics.limitNews.WithLabelValues("bad").Inc()
		return
	}
	now := s.cfg.Now()
	if n.Limiter == "login" {
		s.limiter.Elsewhere(n.Addr, n.User, n.Outcome, now)
	} else if l := s.rateLimiter(n.Limiter); l != nil && n.Key != "" {
		l.TakenElsewhere(n.Key, now)
	} else {
		s.metrics.limitNews.WithLabelValues("bad").Inc()
		return
	}
	s.metrics.limitNews.WithLabelValues("heard").Inc()
}

// maxNewsKey bounds a key or address in the news: an IPv6 /64, a user
// name or an account key is far shorter.
const maxNewsKey = 256

// validNewsUser accepts the user names the login limiter keys by: those
// limiterUser lets through, or none.
func validNewsUser(u string) bool { return u == "" || proto.ValidUsername(u) == nil }

func (s *Server) rateLimiter(name string) *auth.RateLimiter {
	for _, l := range []rateLimit{s.registers, s.resends, s.resetAsks, s.resetFails, s.roomWrites, s.refreshes, s.enrolls} {
		if l.name == name {
			return l.RateLimiter
		}
	}
	return nil
}
