package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Fixed claim values of khadga access tokens.
const (
	Issuer     = "khadga"
	Audience   = "khadga"
	TypeAccess = "access"
)

// MaxTokenLen bounds an access token accepted by VerifyAccess, checked
// before any parsing.
const MaxTokenLen = 4096

var (
	// ErrTokenInvalid means the token is malformed, has a bad signature, an
	// unknown kid, a wrong algorithm, issuer, audience or typ, is not valid
	// yet, or (for refresh tokens) is unknown, revoked or expired. Answer 401.
	ErrTokenInvalid = errors.New("auth: invalid token")
	// ErrTokenExpired means an access token was genuine but its exp has
	// passed (beyond the leeway). Answer 401 so the client refreshes.
	ErrTokenExpired = errors.New("auth: token expired")
)

// Claims is what an access token says about its bearer.
type Claims struct {
	User  string   // sub
	Role  string   // proto.RoleUser, proto.RoleRecorder, proto.RoleAdmin
	Rooms []string // room grants; empty means any room
	// Login is the sign-in the token was issued for (claim "sid"): its
	// refresh-token family, or for a bot (Bot) the id of the bot token it
	// comes from. Empty for bot tokens minted before bot tokens were
	// recorded.
	Login string
	// Bot says Login names a bot token (store.BotToken), not a family.
	Bot bool
	// Set by IssueAccess and filled in by VerifyAccess; ignored on input.
	Key      string    // kid: the signing key
	ID       string    // jti
	IssuedAt time.Time // iat
	Expires  time.Time // exp
}

// jwtClaims is the JSON payload of an access token.
type jwtClaims struct {
	Role  string   `json:"role"`
	Rooms []string `json:"rooms,omitempty"`
	Sid   string   `json:"sid,omitempty"`
	Bot   bool     `json:"bot,omitempty"`
	Typ   string   `json:"typ"`
	jwt.RegisteredClaims
}

// Validate is called by the jwt parser after the standard checks.
func (c *jwtClaims) Validate() error {
	switch {
	case c.Typ != TypeAccess:
		return fmt.Errorf("typ %q is not %q", c.Typ, TypeAccess)
	case c.Subject == "":
		return errors.New("missing sub")
	case c.ID == "":
		return errors.New("missing jti")
	case c.Bot && c.Sid == "":
		return errors.New("a bot token without its id (sid)")
	}
	return nil
}

// IssueAccess signs an access token for c that lives for ttl. Bot tokens
// minted by `khadga token` are access tokens with a longer ttl. It returns
// the token and its expiry (whole seconds, as in the token).
func (k *Keys) IssueAccess(c Claims, ttl time.Duration) (string, time.Time, error) {
	if c.User == "" || ttl <= 0 {
		return "", time.Time{}, fmt.Errorf("auth: issue access: need a user and a positive ttl")
	}
	now := k.now().Truncate(time.Second)
	exp := now.Add(ttl)
	claims := &jwtClaims{
		Role:  c.Role,
		Rooms: c.Rooms,
		Sid:   c.Login,
		Bot:   c.Bot,
		Typ:   TypeAccess,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   c.User,
			Audience:  jwt.ClaimStrings{Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        randomString(16),
		},
	}
	k.mu.RLock()
	kid, key := k.signKID, k.signKey
	k.mu.RUnlock()
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = kid
	s, err := t.SignedString(key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign access token: %w", err)
	}
	return s, exp, nil
}

// VerifyAccess checks an access token and returns its claims. The
// algorithm is pinned to EdDSA (so alg "none" and HS256-with-the-public-key
// tokens fail), the kid must name a non-retired key, exp is required, iss,
// aud and typ must be khadga's, with Options.Leeway of clock skew. It
// returns an error wrapping ErrTokenExpired for an expired but otherwise
// valid token and ErrTokenInvalid for everything else. A token that passed
// once is remembered (verifiedCache) until it expires or its key is
// retired, so that presenting it again skips the signature check.
func (k *Keys) VerifyAccess(token string) (Claims, error) {
	if len(token) > MaxTokenLen {
		return Claims{}, fmt.Errorf("%w: token longer than %d bytes", ErrTokenInvalid, MaxTokenLen)
	}
	now := k.now()
	if c, ok := k.verified.get(token, now, k.leeway, k.Verifies); ok {
		return c, nil
	}
	var jc jwtClaims
	t, err := k.parser.ParseWithClaims(token, &jc, k.keyFunc)
	if err != nil {
		// The parser checks the signature before the claims, so an expired
		// error always comes from a genuine token; it still must be an
		// access token to be reported as merely expired.
		if errors.Is(err, jwt.ErrTokenExpired) && jc.Validate() == nil {
			return Claims{}, fmt.Errorf("%w: %w", ErrTokenExpired, err)
		}
		return Claims{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
	kid, _ := t.Header["kid"].(string)
	c := Claims{User: jc.Subject, Role: jc.Role, Rooms: jc.Rooms, Login: jc.Sid, Bot: jc.Bot, Key: kid, ID: jc.ID, Expires: jc.ExpiresAt.Time}
	if jc.IssuedAt != nil {
		c.IssuedAt = jc.IssuedAt.Time
	}
	k.verified.put(token, c, kid)
	return c, nil
}
