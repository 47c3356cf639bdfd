package signaling

import (
	"cmp"
	"context"
	"errors"
	"sync"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/hub"
	"github.com/khadga/khadga/signaling/store"
)

// Re-checking this node's sessions against the store. A cluster node cut
// off from NATS for longer than the revocation stream keeps revocations
// cannot know which it missed (package cluster, revgap.go), and calls
// recheckSessions when it is back. Every place that revokes writes the
// store before it tells the nodes, so the store has what the node missed:
// each session's credentials are checked again as a new connection's are
// (account: the account exists and is enabled, the sign-in or bot token
// is alive, the key that signed its token was not retired), and the
// sessions whose credentials no longer hold end as a revocation ends them
// (hub.Revoke: error revoked, close code 4401, with the reason that
// revocation gives: admin.ReasonDisabled, reasonSignedOut, reasonKey...).
// A session whose role changed ends too (admin.ReasonRole), as SetRole
// ends it; one whose sign-in expired meanwhile ends as if signed out: its
// next connection would be refused all the same.
//
// Bounds, for a node with many sessions: the hub's sessions are listed
// once (hub.LocalIdentities: each session's lock is held only to copy its
// identity), and each credential (a sign-in's sessions share one) is
// checked once, off every hub lock and every connection's goroutine (on
// the cluster node's re-check goroutine), recheckParallel store reads at
// a time. What fails is ended after every recheckBatch credentials, one
// Revoke (one pass over the hub's sessions) for each reason found: a node
// ends the first ones within moments, and passes over its sessions at
// most credentials/recheckBatch times. A store that cannot be read stops
// the run: what was found revoked by then is ended, nothing is ended for
// credentials not checked, and the node runs it again, from the start.

const (
	recheckParallel = 8
	recheckBatch    = 4096
)

// credential is what a session was let in with, as far as the store
// decides whether it still holds.
type credential struct {
	user, login, key, role string
}

func credentialOf(id hub.Identity) credential {
	return credential{user: id.User, login: id.Login, key: id.KeyID, role: id.Role}
}

// recheckSessions checks the credentials of every session of this node
// against the store, and ends the sessions of those that no longer hold.
// It returns how many it ended, and an error if the store could not be
// read (the caller tries again).
func (s *Server) recheckSessions(ctx context.Context) (int, error) {
	// The keys as the store has them now: the watch of the keys, which
	// ends the sessions of a retired key on its own, may not have caught
	// up yet.
	if err := s.keys.Reload(); err != nil {
		return 0, err
	}
	var creds []credential
	seen := make(map[credential]bool)
	for _, id := range s.hub.LocalIdentities() {
		if c := credentialOf(id); !seen[c] {
			seen[c] = true
			creds = append(creds, c)
		}
	}
	ended := 0
	for len(creds) > 0 {
		if err := ctx.Err(); err != nil {
			return ended, err
		}
		batch := creds[:min(recheckBatch, len(creds))]
		creds = creds[len(batch):]
		revoked, err := s.recheckBatch(batch)
		for reason, set := range revoked {
			ended += s.hub.Revoke(func(id hub.Identity) bool { return set[credentialOf(id)] }, proto.CodeRevoked, reason)
		}
		if err != nil {
			return ended, err
		}
	}
	return ended, nil
}

// recheckBatch checks creds, recheckParallel at a time, and returns those
// that no longer hold by the reason their revocation gives. Its error is
// the store's being unavailable: the credentials it could not check are
// in neither.
func (s *Server) recheckBatch(creds []credential) (map[string]map[credential]bool, error) {
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		firstEr error
		revoked = make(map[string]map[credential]bool)
		work    = make(chan credential)
	)
	for range min(recheckParallel, len(creds)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				reason, err := s.recheckCredential(c)
				mu.Lock()
				switch {
				case err != nil:
					firstEr = cmp.Or(firstEr, err)
				case reason != "":
					if revoked[reason] == nil {
						revoked[reason] = make(map[credential]bool)
					}
					revoked[reason][c] = true
				}
				mu.Unlock()
			}
		}()
	}
	for _, c := range creds {
		mu.Lock()
		failed := firstEr != nil
		mu.Unlock()
		if failed {
			break // the store is down: the rest waits for the next run
		}
		work <- c
	}
	close(work)
	wg.Wait()
	return revoked, firstEr
}

// recheckCredential checks c as account checks a new connection's
// credentials, and returns "" if they hold, or the reason their
// revocation gives; its error is the store's being unavailable.
func (s *Server) recheckCredential(c credential) (string, error) {
	bot, err := s.isBotToken(c)
	if err != nil {
		return "", err
	}
	got, err := s.account(auth.Claims{User: c.user, Role: c.role, Login: c.login, Bot: bot, Key: c.key})
	var r revokedError
	switch {
	case errors.Is(err, errKeyRetired):
		return reasonKey, nil
	case errors.As(err, &r):
		return r.reason, nil
	case err != nil:
		return "", err
	case got.Role != c.role:
		return admin.ReasonRole, nil
	}
	return "", nil
}

// isBotToken reports whether c's sign-in is a bot token's id, which the
// hub does not keep (ids of bot tokens and of sign-ins are random names
// of the same size): a bot token of that id, of c's user, is in the
// store. One of a bot token revoked and purged since is not, and its
// session is then checked as a sign-in's, which is not in the store
// either: revoked all the same.
func (s *Server) isBotToken(c credential) (bool, error) {
	if c.login == "" {
		return false, nil
	}
	t, err := s.store.GetBotToken(c.login)
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return false, err
	case err != nil:
		return false, nil
	}
	return t.User == c.user, nil
}
