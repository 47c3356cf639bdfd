package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// Default lifetimes.
const (
	DefaultAccessTTL  = 15 * time.Minute
	DefaultRefreshTTL = 30 * 24 * time.Hour
)

// Refresh token layout: <key>.<secret>, both base64url without padding:
// the family's key is 16 random bytes, the secret 32. The family's id,
// which every access token of the sign-in carries (claim "sid") and
// anyone who sees one can read, is a one-way hash of the key (familyID):
// the id alone proves nothing, so presenting it with a made-up secret
// cannot pass for the replay of an old token, which revokes the family.
// Families made before keys (store.Family.Keyed false) have the key as
// their id, and keep the old rule until they expire.
const (
	familyIDBytes   = 16
	refreshSecBytes = 32
	// MaxRefreshTokenLen bounds a presented refresh token before parsing.
	MaxRefreshTokenLen = 128
)

var (
	// ErrTokenReuse is reported (through *ReuseError) when an already
	// rotated refresh token is presented: it was probably stolen, so its
	// whole family has been revoked. Audit it.
	ErrTokenReuse = errors.New("auth: refresh token reuse, session revoked")
	// ErrUserDisabled is returned by Login and Refresh when the account is
	// disabled or no longer exists.
	ErrUserDisabled = errors.New("auth: account disabled or deleted")
	// ErrCredentialsChanged is returned by Login when the account's
	// password changed, or the account was disabled, while the login ran:
	// the sign-in it would have made is revoked.
	ErrCredentialsChanged = errors.New("auth: the account's password changed during the sign-in")
)

// ReuseError is the error Refresh returns on refresh-token reuse. It
// names the family's user for the audit log; errors.Is(err, ErrTokenReuse)
// is true.
type ReuseError struct {
	User   string
	Family string
}

func (e *ReuseError) Error() string {
	return fmt.Sprintf("%v (user %q)", ErrTokenReuse, e.User)
}

// Is makes errors.Is(err, ErrTokenReuse) true.
func (e *ReuseError) Is(target error) bool { return target == ErrTokenReuse }

// Pair is what a login or refresh returns to the client.
type Pair struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
	ExpiresIn    int    `json:"expiresIn"` // access token lifetime, seconds
	family       string
}

// Family is the id of p's refresh-token family: the sign-in its access
// token names (Claims.Login).
func (p Pair) Family() string { return p.family }

// SessionsOptions configures Sessions. The zero value is usable.
type SessionsOptions struct {
	AccessTTL  time.Duration    // default DefaultAccessTTL
	RefreshTTL time.Duration    // lifetime of a login's refresh family; default DefaultRefreshTTL
	Now        func() time.Time // default time.Now
}

// Sessions issues token pairs and rotates refresh tokens. It is safe for
// concurrent use; all state is in the store.
type Sessions struct {
	st   store.Backend
	keys *Keys
	opts SessionsOptions
}

// NewSessions returns Sessions over st and keys.
func NewSessions(st store.Backend, keys *Keys, opts SessionsOptions) *Sessions {
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = DefaultAccessTTL
	}
	if opts.RefreshTTL <= 0 {
		opts.RefreshTTL = DefaultRefreshTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Sessions{st: st, keys: keys, opts: opts}
}

// Login starts a new refresh family for u, as read from the store before
// the caller checked its password, and returns the first pair.
// ErrUserDisabled if u.Disabled. ErrCredentialsChanged if the store's u
// has another password or is disabled once the family is stored: a
// password change revokes the families that exist when it is made, so a
// login that checked the old password and stored its family after that
// revocation must revoke its own.
func (s *Sessions) Login(u store.User) (Pair, error) {
	if u.Disabled {
		return Pair{}, ErrUserDisabled
	}
	now := s.opts.Now()
	key, secret := randomString(familyIDBytes), randomString(refreshSecBytes)
	f := store.Family{ID: familyID(key), Keyed: true, User: u.Name, Current: hashSecret(secret),
		Created: now.UTC(), Expires: now.Add(s.opts.RefreshTTL).UTC()}
	if err := s.st.CreateFamily(f); err != nil {
		return Pair{}, fmt.Errorf("auth: login: %w", err)
	}
	if err := s.unchanged(u); err != nil {
		if rerr := s.st.RevokeFamily(f.ID); rerr != nil {
			return Pair{}, fmt.Errorf("auth: login: %w, and its sign-in could not be revoked: %w", err, rerr)
		}
		return Pair{}, err
	}
	return s.pair(u, f.ID, key, secret)
}

// unchanged reports, as an error, whether the store's account u has
// another password than u, or is gone or disabled.
func (s *Sessions) unchanged(u store.User) error {
	now, err := s.st.GetUser(u.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return ErrUserDisabled
	case err != nil:
		return fmt.Errorf("auth: login: %w", err)
	case now.Disabled:
		return ErrUserDisabled
	case now.PasswordHash != u.PasswordHash:
		return ErrCredentialsChanged
	}
	return nil
}

// familyID is the id of the family whose refresh tokens start with key.
func familyID(key string) string {
	h := sha256.Sum256([]byte("khadga refresh family\x00" + key))
	return base64.RawURLEncoding.EncodeToString(h[:familyIDBytes])
}

// RefreshFamilyID is the id of the sign-in (the family, the access
// tokens' "sid") that a well-formed refresh token names, found without the
// store, so that refreshes can be limited per sign-in before any store
// work. It does not say the token is valid.
func RefreshFamilyID(tok string) (string, bool) {
	key, _, ok := parseRefresh(tok)
	if !ok {
		return "", false
	}
	return familyID(key), true
}

// family finds the family of a refresh token's key.
func (s *Sessions) family(key string) (store.Family, error) {
	f, err := s.st.GetFamily(familyID(key))
	if !errors.Is(err, store.ErrNotFound) {
		return f, err
	}
	f, err = s.st.GetFamily(key) // a family made before keys
	if err == nil && f.Keyed {
		// key is a keyed family's id, which access tokens show: no proof.
		return store.Family{}, fmt.Errorf("family: %w", store.ErrNotFound)
	}
	return f, err
}

// Refresh rotates refreshToken: the presented token stops working and a new
// pair is returned. The user is re-read from the store, so the new access
// token carries the current role and room grants, and a disabled or deleted
// user gets ErrUserDisabled (and the family is revoked). Errors:
// ErrTokenInvalid (malformed, unknown, revoked or expired), a *ReuseError
// (errors.Is ErrTokenReuse) when an old token is replayed, ErrUserDisabled,
// and store errors (such as store.ErrUnavailable), after which the token
// still works: the rotation is the last step, so nothing can fail after it
// and leave the client with a token that was rotated away.
func (s *Sessions) Refresh(refreshToken string) (Pair, error) {
	key, secret, ok := parseRefresh(refreshToken)
	if !ok {
		return Pair{}, fmt.Errorf("%w: malformed refresh token", ErrTokenInvalid)
	}
	f, err := s.family(key)
	if errors.Is(err, store.ErrNotFound) {
		return Pair{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	if err != nil {
		return Pair{}, fmt.Errorf("auth: refresh: %w", err)
	}
	u, err := s.st.GetUser(f.User)
	if errors.Is(err, store.ErrNotFound) || err == nil && u.Disabled {
		// Best effort: a deleted user's families are already gone.
		_ = s.st.RevokeFamily(f.ID)
		return Pair{}, fmt.Errorf("auth: refresh: %w", ErrUserDisabled)
	}
	if err != nil {
		return Pair{}, fmt.Errorf("auth: refresh: %w", err)
	}
	next := randomString(refreshSecBytes)
	f, err = s.st.RotateFamily(f.ID, hashSecret(secret), hashSecret(next), s.opts.Now())
	switch {
	case errors.Is(err, store.ErrTokenReuse):
		return Pair{}, &ReuseError{User: f.User, Family: f.ID}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrRevoked):
		return Pair{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	case err != nil:
		return Pair{}, fmt.Errorf("auth: refresh: %w", err)
	}
	return s.pair(u, f.ID, key, next)
}

// Logout revokes the family of refreshToken and returns it (its ID and
// User; zero if it was unknown). Unknown or already revoked families are
// not an error (logout is idempotent). A malformed token, or one whose
// secret is not the family's current one, is ErrTokenInvalid and changes
// nothing: the family id alone is not proof, as every access token of the
// sign-in carries it (claim "sid").
func (s *Sessions) Logout(refreshToken string) (store.Family, error) {
	key, secret, ok := parseRefresh(refreshToken)
	if !ok {
		return store.Family{}, fmt.Errorf("%w: malformed refresh token", ErrTokenInvalid)
	}
	f, err := s.family(key)
	if errors.Is(err, store.ErrNotFound) {
		return store.Family{}, nil
	}
	if err != nil {
		return store.Family{}, fmt.Errorf("auth: logout: %w", err)
	}
	if f.Revoked {
		return f, nil
	}
	if subtle.ConstantTimeCompare(hashSecret(secret), f.Current) != 1 {
		return store.Family{}, fmt.Errorf("%w: not the sign-in's current refresh token", ErrTokenInvalid)
	}
	if err := s.st.RevokeFamily(f.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Family{}, fmt.Errorf("auth: logout: %w", err)
	}
	return f, nil
}

// pair issues an access token for u's sign-in family and the refresh token
// key.secret.
func (s *Sessions) pair(u store.User, family, key, secret string) (Pair, error) {
	access, _, err := s.keys.IssueAccess(Claims{User: u.Name, Role: u.Role, Rooms: u.Rooms, Login: family}, s.opts.AccessTTL)
	if err != nil {
		return Pair{}, err
	}
	return Pair{AccessToken: access, RefreshToken: key + "." + secret, ExpiresIn: int(s.opts.AccessTTL / time.Second), family: family}, nil
}

// parseRefresh splits <key>.<secret> and checks both parts are
// canonical base64url of the right length.
func parseRefresh(tok string) (id, secret string, ok bool) {
	if len(tok) > MaxRefreshTokenLen {
		return "", "", false
	}
	id, secret, ok = strings.Cut(tok, ".")
	if !ok || !isB64(id, familyIDBytes) || !isB64(secret, refreshSecBytes) {
		return "", "", false
	}
	return id, secret, true
}

func isB64(s string, n int) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(n) {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == n
}

// hashSecret is what the store keeps instead of the secret. SHA-256 is
// enough: the secret is 256 random bits, not a password.
func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}
