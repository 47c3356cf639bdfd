package auth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// Bot tokens (`khadga token`) come in two kinds, both recorded in the
// store (store.BotToken) so that they can be listed and revoked:
//
//   - an access token: a signed JWT handed to the bot as is, for up to
//     MaxBotAccessTTL;
//   - a refresh token, "kbt_<id>.<secret>": a long-lived secret (up to
//     MaxBotRefreshTTL) that the bot trades at /api/refresh for access
//     tokens as short as a person's, again and again, so that it runs for
//     months unattended. Unlike a person's refresh token it does not
//     rotate: the bot keeps the one it was given, across restarts.
//
// Every access token of a bot carries the bot token's id (claim "sid",
// with "bot": true), so revoking the bot token refuses them all at once
// (the signaling server checks the record on every connection) and lets
// the server end the sessions they opened.

// Lifetimes of bot tokens.
const (
	// MaxBotAccessTTL bounds a bot access token: it is a bearer token
	// that works until it expires or is revoked.
	MaxBotAccessTTL = 30 * 24 * time.Hour
	// MaxBotRefreshTTL bounds a bot refresh token: mint a new one once a
	// year.
	MaxBotRefreshTTL = 365 * 24 * time.Hour
)

// BotRefreshPrefix starts every bot refresh token, so that it is told
// apart from a person's and found by secret scanners.
const BotRefreshPrefix = "kbt_"

// IsBotRefresh reports whether tok has the shape of a bot refresh token.
func IsBotRefresh(tok string) bool { return strings.HasPrefix(tok, BotRefreshPrefix) }

// BotsOptions configures Bots. The zero value is usable.
type BotsOptions struct {
	// AccessTTL is the lifetime of the access tokens a refresh token buys
	// (default DefaultAccessTTL).
	AccessTTL time.Duration
	Now       func() time.Time // default time.Now
	Logger    *slog.Logger     // default: discard
}

// Bots mints bot tokens and trades bot refresh tokens for access tokens.
// It is safe for concurrent use; all state is in the store.
type Bots struct {
	st   store.Backend
	keys *Keys
	opts BotsOptions
}

// NewBots returns Bots over st and keys.
func NewBots(st store.Backend, keys *Keys, opts BotsOptions) *Bots {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = DefaultAccessTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Bots{st: st, keys: keys, opts: opts}
}

// BotRequest asks for a bot token. The caller (admin.Ops) has checked the
// names and the role.
type BotRequest struct {
	User    string
	Role    string
	Rooms   []string
	TTL     time.Duration
	Refresh bool // a refresh token rather than an access token
}

// Mint creates a bot token and records it; it returns the token, which
// is never stored, and its record.
func (b *Bots) Mint(r BotRequest) (string, store.BotToken, error) {
	limit, kind := MaxBotAccessTTL, store.BotAccess
	if r.Refresh {
		limit, kind = MaxBotRefreshTTL, store.BotRefresh
	}
	if r.User == "" || r.TTL < time.Second || r.TTL > limit {
		return "", store.BotToken{}, fmt.Errorf("auth: bot token: need a user and a lifetime between 1s and %v", limit)
	}
	now := b.opts.Now().UTC().Truncate(time.Second)
	rec := store.BotToken{ID: randomName(familyIDBytes), Kind: kind, User: r.User, Role: r.Role, Rooms: r.Rooms,
		Created: now, Expires: now.Add(r.TTL)}
	var tok string
	if r.Refresh {
		secret := randomString(refreshSecBytes)
		rec.Secret = hashSecret(secret)
		tok = BotRefreshPrefix + rec.ID + "." + secret
	} else {
		var err error
		if tok, rec.Expires, err = b.keys.issueLong(b.claims(rec), r.TTL); err != nil {
			return "", store.BotToken{}, err
		}
	}
	if err := b.st.CreateBotToken(rec); err != nil {
		return "", store.BotToken{}, fmt.Errorf("auth: bot token: %w", err)
	}
	rec.Secret = nil
	return tok, rec, nil
}

func (b *Bots) claims(rec store.BotToken) Claims {
	return Claims{User: rec.User, Role: rec.Role, Rooms: rec.Rooms, Login: rec.ID, Bot: true}
}

// Refresh trades a bot refresh token for an access token that lives for
// AccessTTL (less if the refresh token expires sooner). The refresh token
// stays the same: Pair.RefreshToken is tok. Errors: ErrTokenInvalid
// (malformed, unknown, revoked or expired), ErrUserDisabled (the bot's
// name is a disabled account); any other error is the store's failing,
// which says nothing of the token.
func (b *Bots) Refresh(tok string) (Pair, error) {
	id, secret, ok := parseRefresh(strings.TrimPrefix(tok, BotRefreshPrefix))
	if !ok || !IsBotRefresh(tok) {
		return Pair{}, fmt.Errorf("%w: malformed bot refresh token", ErrTokenInvalid)
	}
	now := b.opts.Now()
	hash := hashSecret(secret)
	rec, err := b.st.UpdateBotToken(id, func(t *store.BotToken) error {
		switch {
		case t.Kind != store.BotRefresh || subtle.ConstantTimeCompare(hash, t.Secret) != 1:
			return errBotSecret
		case !t.Revoked.IsZero():
			return errBotRevoked
		case !now.Before(t.Expires.Add(-time.Second)):
			return errBotExpired
		}
		t.LastUsed = now.UTC()
		return nil
	})
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, errBotSecret) || errors.Is(err, errBotRevoked) || errors.Is(err, errBotExpired) {
		return Pair{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	if err != nil {
		return Pair{}, fmt.Errorf("auth: bot refresh: %w", err) // the store failed
	}
	// A bot need not be an account; one that is must be enabled.
	if u, err := b.st.GetUser(rec.User); err == nil && u.Disabled {
		return Pair{}, ErrUserDisabled
	}
	ttl := min(b.opts.AccessTTL, rec.Expires.Sub(now))
	access, _, err := b.keys.IssueAccess(b.claims(rec), ttl)
	if err != nil {
		return Pair{}, err
	}
	return Pair{AccessToken: access, RefreshToken: tok, ExpiresIn: int(ttl / time.Second)}, nil
}

var (
	errBotSecret  = errors.New("not this bot token's secret")
	errBotRevoked = errors.New("bot token revoked")
	errBotExpired = errors.New("bot token expired")
)

// Revoke revokes the bot token id and returns its record (with Revoked
// set). Revoking twice is not an error. ErrNotFound (wrapped) if unknown.
func (b *Bots) Revoke(id string) (store.BotToken, error) {
	now := b.opts.Now().UTC()
	rec, err := b.st.UpdateBotToken(id, func(t *store.BotToken) error {
		if t.Revoked.IsZero() {
			t.Revoked = now
		}
		return nil
	})
	rec.Secret = nil
	return rec, err
}

// issueLong signs a long-lived access token (a bot's) and records its
// expiry on the signing key first, so that rotating the key keeps it
// verifying until the token expires. rotMu keeps a rotation from
// slipping in between.
func (k *Keys) issueLong(c Claims, ttl time.Duration) (string, time.Time, error) {
	k.rotMu.Lock()
	defer k.rotMu.Unlock()
	kid := k.SigningKID()
	until := k.now().Add(ttl).UTC()
	err := k.st.UpdateSigningKey(kid, func(s *store.SigningKey) error {
		if until.After(s.TokensUntil) {
			s.TokensUntil = until
		}
		return nil
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: record a long-lived token on its key: %w", err)
	}
	return k.IssueAccess(c, ttl)
}
