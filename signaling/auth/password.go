// Package auth holds khadga's credentials logic on top of the store:
//
//   - passwords hashed with argon2id in PHC strings (HashPassword,
//     VerifyPassword, DummyVerify);
//   - short-lived access JWTs signed with Ed25519 keys kept in the store,
//     with a kid so keys can rotate (Keys);
//   - rotating opaque refresh tokens with reuse detection (Sessions);
//   - login rate limiting per client address and per account (LoginLimiter);
//   - single-use WebSocket tickets, so tokens never travel in URLs (Tickets).
//
// Errors that handlers switch on are sentinels: ErrTokenInvalid,
// ErrTokenExpired, ErrTokenReuse, ErrUserDisabled, ErrTooManyTickets,
// ErrPasswordTooLong.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// MaxPasswordLen bounds passwords in bytes. Handlers should reject longer
// ones before calling in; VerifyPassword treats them as wrong.
const MaxPasswordLen = 1024

// Bounds on parameters read back from a stored hash, so a corrupted or
// malicious store cannot make one verification eat gigabytes or minutes.
const (
	maxMemoryKiB = 256 * 1024
	maxTime      = 16
	maxThreads   = 16
	minSaltLen   = 8
	maxSaltLen   = 64
	minKeyLen    = 16
	maxKeyLen    = 64
	maxEncoded   = 512
)

var (
	// ErrPasswordTooLong is returned by Hash when the password exceeds
	// MaxPasswordLen.
	ErrPasswordTooLong = errors.New("auth: password too long")
	// ErrBadHash is returned by VerifyPassword when the stored string is not
	// an argon2id PHC string this package accepts (including absurd
	// parameters).
	ErrBadHash = errors.New("auth: malformed or unsupported password hash")
)

// Params are argon2id parameters. They are written into every hash, so
// changing them affects only new hashes; NeedsRehash tells when a stored hash
// uses other parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultParams are OWASP's argon2id minimum: 19 MiB, 2 passes, 1 thread.
var DefaultParams = Params{Memory: 19456, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// HashPassword hashes pw with DefaultParams.
func HashPassword(pw string) (string, error) { return DefaultParams.Hash(pw) }

// DummyVerify spends the same time as VerifyPassword on a DefaultParams
// hash. Call it when the user does not exist, so response time does not
// reveal which usernames exist.
func DummyVerify(pw string) { DefaultParams.DummyVerify(pw) }

// Hash returns the PHC string $argon2id$v=19$m=M,t=T,p=P$salt$hash for pw
// with a fresh random salt.
func (p Params) Hash(pw string) (string, error) {
	if len(pw) > MaxPasswordLen {
		return "", ErrPasswordTooLong
	}
	if err := p.check(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// DummyVerify computes one argon2id key with p and discards it.
func (p Params) DummyVerify(pw string) {
	if len(pw) > MaxPasswordLen {
		pw = pw[:MaxPasswordLen]
	}
	salt := make([]byte, max(p.SaltLen, minSaltLen))
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	subtle.ConstantTimeCompare(key, make([]byte, len(key)))
}

// check reports parameters outside the accepted bounds.
func (p Params) check() error {
	switch {
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemoryKiB,
		p.Time < 1 || p.Time > maxTime,
		p.Threads < 1 || p.Threads > maxThreads,
		p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen,
		p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("%w: parameters m=%d t=%d p=%d salt=%d key=%d out of bounds",
			ErrBadHash, p.Memory, p.Time, p.Threads, p.SaltLen, p.KeyLen)
	}
	return nil
}

// VerifyPassword reports whether pw matches the PHC string encoded, in
// constant time with respect to the hash. It returns ErrBadHash if encoded
// cannot be parsed or has parameters outside safe bounds. A password longer
// than MaxPasswordLen is reported as wrong.
func VerifyPassword(encoded, pw string) (bool, error) {
	p, salt, want, err := parsePHC(encoded)
	if err != nil {
		return false, err
	}
	if len(pw) > MaxPasswordLen {
		p.DummyVerify(pw)
		return false, nil
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether encoded was made with parameters other than
// p (or cannot be parsed), so a handler can rehash after a successful login.
func NeedsRehash(encoded string, p Params) bool {
	got, salt, _, err := parsePHC(encoded)
	return err != nil || got.Memory != p.Memory || got.Time != p.Time ||
		got.Threads != p.Threads || got.KeyLen != p.KeyLen || uint32(len(salt)) != p.SaltLen
}

// parsePHC strictly parses $argon2id$v=19$m=M,t=T,p=P$salt$hash.
func parsePHC(s string) (p Params, salt, key []byte, err error) {
	bad := func(why string) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, fmt.Errorf("%w: %s", ErrBadHash, why)
	}
	if len(s) > maxEncoded {
		return bad("too long")
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported version")
	}
	vals, ok := parseKV(parts[3], "m", "t", "p")
	if !ok || vals[2] > 255 {
		return bad("bad parameters")
	}
	p = Params{Memory: uint32(vals[0]), Time: uint32(vals[1]), Threads: uint8(vals[2])}
	b64 := base64.RawStdEncoding.Strict()
	if salt, err = b64.DecodeString(parts[4]); err != nil {
		return bad("bad salt encoding")
	}
	if key, err = b64.DecodeString(parts[5]); err != nil {
		return bad("bad hash encoding")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if err := p.check(); err != nil {
		return Params{}, nil, nil, err
	}
	return p, salt, key, nil
}

// parseKV parses "k1=v1,k2=v2,..." with exactly the given keys in order.
func parseKV(s string, keys ...string) ([]uint64, bool) {
	fields := strings.Split(s, ",")
	if len(fields) != len(keys) {
		return nil, false
	}
	out := make([]uint64, len(keys))
	for i, f := range fields {
		v, ok := strings.CutPrefix(f, keys[i]+"=")
		if !ok {
			return nil, false
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}
