package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST scheme is defined with HMAC-SHA1
	"encoding/base64"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	pionturn "github.com/pion/turn/v4"
)

// Mint returns TURN REST credentials for user, valid for ttl from now: the
// username "<unix-expiry>:<user>" and the password
// base64(HMAC-SHA1(secret, username)), as coturn's use-auth-secret expects.
func Mint(secret []byte, user string, ttl time.Duration, now time.Time) (username, password string, expires time.Time) {
	expires = time.Unix(now.Add(ttl).Unix(), 0)
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + user
	return username, restPassword(secret, username), expires
}

func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Errors of parseUsername (the reason label of auth failures).
var (
	// errBadUsername means a username is not "<unix-expiry>[:<user>]".
	errBadUsername = errors.New("TURN username is not <unix-expiry>:<user>")
	// errExpired means a username's expiry has passed.
	errExpired = errors.New("TURN credentials expired")
)

// parseUsername splits a REST username into its expiry and its user. Like
// coturn, a username without a colon is a bare expiry.
func parseUsername(username string, now time.Time) (user string, expires time.Time, err error) {
	ts, user, _ := strings.Cut(username, ":")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec <= 0 {
		return "", time.Time{}, errBadUsername
	}
	expires = time.Unix(sec, 0)
	if !now.Before(expires) {
		return user, expires, errExpired
	}
	return user, expires, nil
}

// userOf is the quota key of a REST username: its user part, the same as
// parseUsername's (empty for a bare expiry).
func userOf(username string) string {
	_, user, _ := strings.Cut(username, ":")
	return user
}

// authenticator is pion's AuthHandler for the REST scheme with several
// secrets. Pion's AuthHandler returns one key and never sees the message,
// so with more than one secret the listeners try each secret against the
// message's MESSAGE-INTEGRITY first (see secretHints) and leave a hint of
// which one matched.
type authenticator struct {
	secrets *secretSet
	hints   *secretHints
	metrics *metrics
	now     func() time.Time
}

func (a *authenticator) handle(username, realm string, src net.Addr) ([]byte, bool) {
	if _, _, err := parseUsername(username, a.now()); err != nil {
		reason := "malformed"
		if errors.Is(err, errExpired) {
			reason = "expired"
		}
		a.metrics.authFailures.WithLabelValues(reason).Inc()
		return nil, false
	}
	secrets := a.secrets.load()
	secret := secrets[0]
	if len(secrets) > 1 {
		// A hint left just before SetSecrets dropped its secret is not used.
		if h, ok := a.hints.take(src, username); ok && index(secrets, h) >= 0 {
			secret = h
		}
	}
	return pionturn.GenerateAuthKey(username, realm, restPassword(secret, username)), true
}

// maxHints bounds the hint table. Only messages that carry valid
// credentials leave a hint, and pion consumes it at once, so the table is
// tiny in practice; the bound only guards against surprises.
const maxHints = 4096

// secretHints remembers, per client address and username, the secret that
// verified the message a listener just read. Pion reads a socket and then
// handles the message on the same goroutine, so the hint is consumed by the
// AuthHandler right after it is left.
type secretHints struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newSecretHints() *secretHints {
	return &secretHints{m: make(map[string][]byte)}
}

func hintKey(src net.Addr, username string) string {
	return src.Network() + "|" + src.String() + "|" + username
}

func (h *secretHints) put(src net.Addr, username string, secret []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.m) >= maxHints {
		clear(h.m)
	}
	h.m[hintKey(src, username)] = secret
}

func (h *secretHints) take(src net.Addr, username string) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := hintKey(src, username)
	secret, ok := h.m[k]
	delete(h.m, k)
	return secret, ok
}
