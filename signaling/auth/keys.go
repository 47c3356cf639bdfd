package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/khadga/khadga/signaling/store"
)

// AlgEdDSA is the only JWT algorithm khadga signs with or accepts.
const AlgEdDSA = "EdDSA"

var (
	// ErrNoActiveKey is returned by Retire when retiring the key would leave
	// nothing to sign with.
	ErrNoActiveKey = errors.New("auth: no active signing key would remain")
	// ErrUnknownKey is returned by Retire for a kid Keys does not know.
	ErrUnknownKey = errors.New("auth: unknown signing key")
)

// KeysOptions configures Keys. The zero value is usable.
type KeysOptions struct {
	// Now is the clock for iat/nbf/exp. Default time.Now.
	Now func() time.Time
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default
	// DefaultLeeway.
	Leeway time.Duration
	// Logger receives key creation and rotation messages. Default: discard.
	Logger *slog.Logger
	// Retired, if set, is called when kid is found retired before its
	// time (Retire, in this process or another: Reload), so that the
	// sessions opened with its tokens can be ended.
	Retired func(kid string)
}

// DefaultLeeway is the clock skew VerifyAccess tolerates by default.
const DefaultLeeway = 30 * time.Second

// MaxAccessTTL is the longest lifetime of the access tokens of a sign-in
// (signaling.Config.AccessTTL is at most this): a rotated-out key verifies
// for at least this long. Bot tokens may live longer; their keys record it
// (store.SigningKey.TokensUntil).
const MaxAccessTTL = 24 * time.Hour

// Keys signs and verifies access tokens with the Ed25519 keys kept in the
// store. It signs with the newest non-retired key, putting its id in the
// JWT kid header, and verifies against every non-retired key by kid. Keys is
// safe for concurrent use.
type Keys struct {
	st      store.Backend
	now     func() time.Time
	leeway  time.Duration
	log     *slog.Logger
	retired func(kid string)
	parser  *jwt.Parser
	rotMu   sync.Mutex // serialises Rotate and Retire (store write + Reload)
	// loadMu serialises Reload's read of the store with its use: else a
	// reload that read before a retirement could apply its keys after the
	// one that read it, and the retired key would verify again.
	loadMu sync.Mutex

	mu       sync.RWMutex
	signKID  string
	signKey  ed25519.PrivateKey
	verify   map[string]ed25519.PublicKey // kid -> key, non-retired only
	retireAt map[string]time.Time         // kid -> when it stops verifying, for rotated keys
	newest   time.Time                    // Created of the newest stored key

	verified verifiedCache // access tokens already verified
}

// NewKeys loads the signing keys from st, creating and storing a first key
// if there is no usable one.
func NewKeys(st store.Backend, opts KeysOptions) (*Keys, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Leeway <= 0 {
		opts.Leeway = DefaultLeeway
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	k := &Keys{st: st, now: opts.Now, leeway: opts.Leeway, log: opts.Logger, retired: opts.Retired}
	k.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{AlgEdDSA}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(opts.Now),
		jwt.WithStrictDecoding(),
	)
	if err := k.Reload(); err != nil {
		return nil, err
	}
	if k.signKey == nil {
		if _, err := k.Rotate(); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Reload re-reads the keys from the store, for example after another
// process rotated them. A key it finds retired before its time (Retire,
// here or in another process: not RetireDue) is reported to
// KeysOptions.Retired, so that every process that reloads ends the
// sessions opened with its tokens.
func (k *Keys) Reload() error {
	retired, err := k.load()
	if err != nil {
		return err
	}
	if k.retired != nil {
		for _, kid := range retired {
			k.retired(kid)
		}
	}
	return nil
}

// load reads the keys and puts them in use, under loadMu; it returns the
// keys it found retired before their time.
func (k *Keys) load() ([]string, error) {
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	stored, err := k.st.SigningKeys()
	if err != nil {
		return nil, fmt.Errorf("auth: load signing keys: %w", err)
	}
	verify := make(map[string]ed25519.PublicKey)
	retireAt := make(map[string]time.Time)
	var signKID string
	var signKey ed25519.PrivateKey
	var newest time.Time
	for _, sk := range stored { // oldest first, so the last active one wins
		newest = sk.Created
		if sk.Retired || sk.Alg != AlgEdDSA {
			continue
		}
		priv, err := privateKey(sk.Private)
		if err != nil {
			return nil, fmt.Errorf("auth: signing key %q: %w", sk.ID, err)
		}
		verify[sk.ID] = priv.Public().(ed25519.PublicKey)
		if !sk.RetireAt.IsZero() {
			retireAt[sk.ID] = sk.RetireAt
		}
		signKID, signKey = sk.ID, priv
	}
	now := k.now()
	k.mu.Lock()
	var retired []string
	for _, sk := range stored {
		_, was := k.verify[sk.ID]
		if was && sk.Retired && (sk.RetireAt.IsZero() || now.Before(sk.RetireAt)) {
			retired = append(retired, sk.ID)
		}
	}
	k.signKID, k.signKey, k.verify, k.retireAt, k.newest = signKID, signKey, verify, retireAt, newest
	k.mu.Unlock()
	return retired, nil
}

// privateKey accepts an Ed25519 seed or a full private key.
func privateKey(b []byte) (ed25519.PrivateKey, error) {
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		return ed25519.NewKeyFromSeed(b[:ed25519.SeedSize]), nil
	}
	return nil, fmt.Errorf("bad Ed25519 key length %d", len(b))
}

// Rotate creates a new key, stores it and makes it the signing key. The
// keys it replaces keep verifying until every token they signed has
// expired (their RetireAt: MaxAccessTTL from now, or the expiry of the
// longest-lived bot token they signed, if later), then stop. It returns
// the new kid.
func (k *Keys) Rotate() (string, error) {
	k.rotMu.Lock()
	defer k.rotMu.Unlock()
	if err := k.scheduleRetirement(); err != nil {
		return "", err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("auth: generate key: %w", err)
	}
	kid := randomName(12)
	// Keys sign in Created order, so the new key must be strictly newest
	// even if the clock stepped back or did not move.
	created := k.now().UTC()
	k.mu.RLock()
	if !created.After(k.newest) {
		created = k.newest.Add(time.Nanosecond)
	}
	k.mu.RUnlock()
	sk := store.SigningKey{ID: kid, Alg: AlgEdDSA, Private: priv.Seed(), Created: created}
	if err := k.st.AddSigningKey(sk); err != nil {
		return "", fmt.Errorf("auth: store key: %w", err)
	}
	if err := k.Reload(); err != nil {
		return "", err
	}
	k.log.Info("jwt signing key created", slog.String("kid", kid))
	return kid, nil
}

// scheduleRetirement gives every active key that has no RetireAt yet the
// time its last token expires, before a new key takes over signing. A key
// scheduled and then not replaced (the new key failed to store) just
// retires early for no reason; the caller reports the error.
func (k *Keys) scheduleRetirement() error {
	stored, err := k.st.SigningKeys()
	if err != nil {
		return fmt.Errorf("auth: load signing keys: %w", err)
	}
	now := k.now().UTC()
	for _, sk := range stored {
		if sk.Retired || !sk.RetireAt.IsZero() {
			continue
		}
		at := now.Add(MaxAccessTTL)
		if sk.TokensUntil.After(at) {
			at = sk.TokensUntil
		}
		at = at.Add(k.leeway)
		if err := k.st.UpdateSigningKey(sk.ID, func(s *store.SigningKey) error { s.RetireAt = at; return nil }); err != nil {
			return fmt.Errorf("auth: schedule key retirement: %w", err)
		}
		k.log.Info("jwt signing key rotated out; it verifies until its tokens expire",
			slog.String("kid", sk.ID), slog.Time("retire_at", at))
	}
	return nil
}

// RetireDue retires the keys whose RetireAt has passed (they verify
// nothing from then on anyway: keyFunc checks RetireAt) and returns their
// ids. It does not call KeysOptions.Retired: every token those keys signed
// has expired, so no session needs ending.
func (k *Keys) RetireDue() ([]string, error) {
	k.rotMu.Lock()
	defer k.rotMu.Unlock()
	stored, err := k.st.SigningKeys()
	if err != nil {
		return nil, fmt.Errorf("auth: load signing keys: %w", err)
	}
	now := k.now()
	var done []string
	for _, sk := range stored {
		if sk.Retired || sk.RetireAt.IsZero() || now.Before(sk.RetireAt) {
			continue
		}
		if err := k.st.RetireSigningKey(sk.ID); err != nil {
			return done, fmt.Errorf("auth: retire key: %w", err)
		}
		k.log.Info("jwt signing key retired: its tokens have expired", slog.String("kid", sk.ID))
		done = append(done, sk.ID)
	}
	if len(done) == 0 {
		return nil, nil
	}
	return done, k.Reload()
}

// KeyInfo describes a signing key, without its material.
type KeyInfo struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// Signing: new tokens are signed with this key.
	Signing bool `json:"signing"`
	// RetireAt is when a rotated-out key stops verifying; zero for the
	// signing key.
	RetireAt time.Time `json:"retire_at,omitzero"`
	Retired  bool      `json:"retired"`
}

// List describes every key, oldest first.
func (k *Keys) List() ([]KeyInfo, error) {
	stored, err := k.st.SigningKeys()
	if err != nil {
		return nil, fmt.Errorf("auth: load signing keys: %w", err)
	}
	signing := k.SigningKID()
	out := make([]KeyInfo, len(stored))
	for i, sk := range stored {
		out[i] = KeyInfo{ID: sk.ID, Created: sk.Created, Signing: sk.ID == signing && !sk.Retired,
			RetireAt: sk.RetireAt, Retired: sk.Retired}
	}
	return out, nil
}

// Retire stops kid from verifying (and signing). Tokens signed with it are
// rejected from then on. It refuses to retire the last active key.
func (k *Keys) Retire(kid string) error {
	k.rotMu.Lock()
	defer k.rotMu.Unlock()
	k.mu.RLock()
	_, known := k.verify[kid]
	n := len(k.verify)
	k.mu.RUnlock()
	if !known {
		return fmt.Errorf("%w: %q", ErrUnknownKey, kid)
	}
	if n <= 1 {
		return ErrNoActiveKey
	}
	if err := k.st.RetireSigningKey(kid); err != nil {
		return fmt.Errorf("auth: retire key: %w", err)
	}
	k.log.Info("jwt signing key retired", slog.String("kid", kid))
	return k.Reload() // which reports kid to KeysOptions.Retired
}

// SigningKID returns the kid new tokens are signed with.
func (k *Keys) SigningKID() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.signKID
}

// keyFunc finds the verification key named by the token's kid header. The
// method check duplicates WithValidMethods on purpose: a public key must
// never be handed to an HMAC or RSA verifier.
func (k *Keys) keyFunc(t *jwt.Token) (any, error) {
	if _, ok := t.Method.(*jwt.SigningMethodEd25519); !ok {
		return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
	}
	kid, _ := t.Header["kid"].(string)
	pub, ok := k.verifyKey(kid)
	if !ok {
		return nil, fmt.Errorf("unknown kid %q", kid)
	}
	return pub, nil
}

// verifyKey returns kid's public key while it verifies: not retired, and
// before its RetireAt if it was rotated out.
func (k *Keys) verifyKey(kid string) (ed25519.PublicKey, bool) {
	k.mu.RLock()
	pub, ok := k.verify[kid]
	at, rotated := k.retireAt[kid]
	k.mu.RUnlock()
	if ok && rotated && !k.now().Before(at) {
		return nil, false
	}
	return pub, ok
}

// Verifies reports whether tokens signed with kid still verify: the key
// is known, not retired, and not past the end of its rotation.
func (k *Keys) Verifies(kid string) bool {
	_, ok := k.verifyKey(kid)
	return ok
}

// randomString returns n random bytes, base64url-encoded without padding.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// randomName is randomString for an identifier an operator types (a key id,
// a bot token id): it never starts with '-', which a command line would
// take for a flag. Redrawing costs under a bit of the n*8.
func randomName(n int) string {
	for {
		if s := randomString(n); s[0] != '-' {
			return s
		}
	}
}
