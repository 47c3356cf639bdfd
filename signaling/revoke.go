package signaling

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/hub"
	"github.com/khadga/khadga/signaling/store"
)

// Revocation reaching live sessions (issue 14, point 9).
//
// Access tokens live for minutes and a WebSocket for as long as it is open,
// so revoking credentials in the store is not enough: the places that
// revoke (sign-out, an account disabled, deleted or given another role, a
// signing key retired) also tell the hub, through sessionCloser, to end
// the sessions those credentials opened, at once and with a reason the
// SDK and the Go client show. Every connection, a resume included, is
// authenticated again against the store (account): the user must still
// exist and be enabled, the sign-in must not be revoked, and the identity
// handed to the hub carries the account's current role and room grants.
// A revocation that lands between that check and the session's start is
// not missed either: the identity carries when it was checked
// (hub.Identity.Checked), and the hub ends a session that attaches after a
// revocation made since then that matches it.

// sessionCloser is what revocation needs from the hub (*hub.Hub). Both methods end
// sessions, connected or waiting for a resume: each of their connections
// gets an error with code and reason, then the close code
// proto.CloseRevoked with reason, their resume tokens stop working, their
// rooms get peer-left and presence says offline. They return how many
// sessions ended.
type sessionCloser interface {
	// CloseUser ends every session of user.
	CloseUser(user string, code proto.Code, reason string) int
	// CloseLogin ends the sessions of user opened with tokens of one
	// sign-in (hub.Identity.Login, the refresh-token family of
	// auth.Claims.Login), leaving the user's other sign-ins connected.
	CloseLogin(user, login string, code proto.Code, reason string) int
	// MoveLogin gives the sessions of user's sign-in from to sign-in to,
	// which replaces it (a password change).
	MoveLogin(user, from, to string) int
}

// Cluster is what a node of a cluster needs from package cluster's Node:
// the hub's Delivery, started with the hub, revocation on every node, and
// a drain that moves this node's sessions to the others at shutdown.
type Cluster interface {
	hub.Delivery
	sessionCloser
	Start(ctx context.Context, h *hub.Hub) error
	Drain(ctx context.Context)
	Close()
	// Ready reports why the node cannot serve (NATS or its JetStream
	// unreachable), or nil: /readyz says so, and a load balancer sends
	// clients elsewhere.
	Ready() error
	// ID names the node in the WebSocket tickets it issues, so that
	// another node presented one asks it (RedeemTicket), and the node
	// answers such requests with ServeTickets' function (called before
	// Start).
	ID() string
	ServeTickets(redeem func(ticket string) (claims []byte, ok bool))
	RedeemTicket(node, ticket string) (claims []byte, ok bool)
	// Tell sends news to the other nodes that Listen to its topic (called
	// before Start): the limiters' counts (limits.go).
	Tell(topic string, data []byte) bool
	Listen(topic string, f func(data []byte))
	// OnRevocationGap gives the node what checks this node's sessions
	// against the store when it may have missed revocations (called
	// before Start): recheckSessions (recheck.go).
	OnRevocationGap(recheck func(ctx context.Context) (ended int, err error))
}

// Reasons given to clients whose sessions end; the admin operations give
// their own (admin.Reason*).
const (
	reasonSignedOut = "signed out"
	reasonKey       = "the server retired the key of your sign-in; sign in again"
	reasonReuse     = "your sign-in was used from elsewhere; sign in again"
)

// errRevoked is what account answers for credentials that no longer hold.
var errRevoked = errors.New("signed out, or the account is disabled or deleted")

// revokedError is account's errRevoked, with the reason that the
// revocation of the same credentials gives their sessions, for a check
// that ends them after a revocation it missed (recheck.go). Its text is
// errRevoked's: an HTTP client learns no more than before.
type revokedError struct{ reason string }

func (e revokedError) Error() string        { return errRevoked.Error() }
func (e revokedError) Is(target error) bool { return target == errRevoked }

// errKeyRetired is what account answers for claims whose signing key was
// retired after they were verified (a ticket bought before).
var errKeyRetired = errors.New("the key that signed this sign-in was retired; sign in again")

// account checks claims, from an access token or a ticket, against the
// store: a sign-in's user must exist and be enabled and its family must
// be alive; the claims then get the account's current role and room
// grants. A bot's token must come from a bot token that is recorded,
// unrevoked and unexpired, and is refused for a disabled account of its
// name; its role and rooms are the ones an admin minted.
func (s *Server) account(c auth.Claims) (auth.Claims, error) {
	if !s.keys.Verifies(c.Key) {
		// A ticket's claims were checked when it was bought; the key that
		// signed them may have been retired since.
		return auth.Claims{}, errKeyRetired
	}
	if c.Bot {
		if alive, err := s.botAlive(c); err != nil || !alive {
			return auth.Claims{}, cmp.Or(err, error(revokedError{admin.ReasonTokenRevoked}))
		}
	}
	u, err := s.store.GetUser(c.User)
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return auth.Claims{}, err // not a refusal: the caller answers 503
	case errors.Is(err, store.ErrNotFound) && (c.Login == "" || c.Bot):
		return c, nil // a bot that is no account
	case err != nil:
		return auth.Claims{}, revokedError{admin.ReasonDeleted}
	case u.Disabled:
		return auth.Claims{}, revokedError{admin.ReasonDisabled}
	case c.Login == "" || c.Bot:
		return c, nil
	case u.Bot:
		return auth.Claims{}, revokedError{admin.ReasonDeleted} // a sign-in of an account since deleted
	}
	f, err := s.store.GetFamily(c.Login)
	if errors.Is(err, store.ErrUnavailable) {
		return auth.Claims{}, err
	}
	if err != nil || f.Revoked || f.User != c.User || !s.cfg.Now().Before(f.Expires) {
		return auth.Claims{}, revokedError{reasonSignedOut}
	}
	c.Role, c.Rooms = u.Role, u.Rooms
	return c, nil
}

// botAlive reports whether the bot token behind a bot's access token is
// still good: recorded for this user, not revoked, not expired. Its error
// is the store's being unavailable.
func (s *Server) botAlive(c auth.Claims) (bool, error) {
	t, err := s.store.GetBotToken(c.Login)
	if errors.Is(err, store.ErrUnavailable) {
		return false, err
	}
	return err == nil && t.User == c.User && t.Revoked.IsZero() && s.cfg.Now().Before(t.Expires), nil
}

// keyUsers remembers which users authenticated with tokens of which
// signing key, until those tokens expire, so that retiring a key ends
// their sessions. At most maxKeyUsers pairs are kept; past that the
// oldest-expiring are forgotten, and those users' sessions end at their
// next connection instead (the key no longer verifies).
type keyUsers struct {
	mu sync.Mutex
	m  map[string]map[string]time.Time // kid -> user -> latest token expiry
	n  int
}

const maxKeyUsers = 100_000

func (k *keyUsers) seen(kid, user string, expires, now time.Time) {
	if kid == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = make(map[string]map[string]time.Time)
	}
	users := k.m[kid]
	if users == nil {
		users = make(map[string]time.Time)
		k.m[kid] = users
	}
	if old, ok := users[user]; ok {
		if expires.After(old) {
			users[user] = expires
		}
		return
	}
	if k.n >= maxKeyUsers {
		k.forget(now)
	}
	if k.n < maxKeyUsers {
		users[user] = expires
		k.n++
	}
}

// forget drops expired pairs. k.mu is held.
func (k *keyUsers) forget(now time.Time) {
	for kid, users := range k.m {
		for u, exp := range users {
			if !now.Before(exp) {
				delete(users, u)
				k.n--
			}
		}
		if len(users) == 0 {
			delete(k.m, kid)
		}
	}
}

// take removes and returns the users of kid.
func (k *keyUsers) take(kid string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	users := k.m[kid]
	delete(k.m, kid)
	k.n -= len(users)
	out := make([]string, 0, len(users))
	for u := range users {
		out = append(out, u)
	}
	return out
}

// endUser ends every live session of user, for reason.
func (s *Server) endUser(user, reason string) { s.endSessions(user, "", reason) }

// endSessions ends the live sessions of user opened with the tokens of one
// sign-in or bot token (login), or every one of them when login is empty,
// for reason: the admin operations' Revoked.
func (s *Server) endSessions(user, login, reason string) {
	var n int
	if login == "" {
		n = s.closer.CloseUser(user, proto.CodeRevoked, reason)
	} else {
		n = s.closer.CloseLogin(user, login, proto.CodeRevoked, reason)
	}
	s.log.Info("sessions ended", slog.String("user", user), slog.String("reason", reason), slog.Int("sessions", n))
}

// keyRetired ends the sessions of every user who authenticated with kid.
func (s *Server) keyRetired(kid string) {
	for _, u := range s.keyUsers.take(kid) {
		s.endUser(u, reasonKey)
	}
}
