// Package admin holds khadga's admin operations (users, roles, passwords,
// bot tokens, signing keys, backups) and serves them on a local unix
// socket.
//
// bbolt lets one process open the store at a time, so the admin commands
// reach it in one of two ways: while the server runs, through the admin
// socket it listens on (DataDir/admin.sock, mode 0600: file permissions are
// the access control); when it is stopped, by opening the file directly.
// Both ways implement the same Admin interface over the same Ops, so the
// command line code has one path.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// Admin is what the admin commands can do, in-process or over the socket.
type Admin interface {
	ListUsers(ctx context.Context) ([]UserInfo, error)
	AddUser(ctx context.Context, name, password, role string) error
	DeleteUser(ctx context.Context, name string) error
	SetDisabled(ctx context.Context, name string, disabled bool) error
	SetRole(ctx context.Context, name, role string) error
	ResetTOTP(ctx context.Context, name string) error
	SetPassword(ctx context.Context, name, password string) error
	MintToken(ctx context.Context, req TokenRequest) (Token, error)
	ListTokens(ctx context.Context) ([]TokenInfo, error)
	RevokeToken(ctx context.Context, id string) error
	ListKeys(ctx context.Context) ([]auth.KeyInfo, error)
	RotateKey(ctx context.Context) (string, error)
	RetireKey(ctx context.Context, kid string) error
	Backup(ctx context.Context, w io.Writer) (int64, error)
}

// UserInfo is a user as the admin commands show it: no password hash.
type UserInfo struct {
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	Disabled bool      `json:"disabled"`
	Created  time.Time `json:"created"`
	// Bot says the name is held for bot tokens, not an account that
	// signs in (store.User.Bot).
	Bot bool `json:"bot,omitempty"`
	// TwoFactor says the account signs in with a TOTP code too.
	TwoFactor bool `json:"two_factor,omitempty"`
	// Email is the account's address, if it gave one; EmailConfirmed
	// says its link was opened (a server with the email check lets it
	// sign in only then).
	Email          string `json:"email,omitempty"`
	EmailConfirmed bool   `json:"email_confirmed,omitempty"`
}

// TokenRequest asks for a bot token (`khadga token`).
type TokenRequest struct {
	User  string        `json:"user"`
	Role  string        `json:"role"`
	Rooms []string      `json:"rooms"`
	TTL   time.Duration `json:"ttl"` // 0: DefaultTokenTTL, or DefaultRefreshTTL with Refresh
	// Refresh asks for a refresh token, which the bot trades for short
	// access tokens for as long as it lives (see package auth, Bots).
	Refresh bool `json:"refresh,omitempty"`
	// ShareAccount lets a bot go by the name of an existing account (the
	// two share its connection limit); without it that is refused.
	ShareAccount bool `json:"share_account,omitempty"`
}

// Token is a minted bot token.
type Token struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"` // what `khadga token list` shows and `revoke` takes
	Expires time.Time `json:"expires"`
}

// TokenInfo is a recorded bot token as `khadga token list` shows it.
type TokenInfo struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"` // access or refresh
	User     string    `json:"user"`
	Role     string    `json:"role"`
	Rooms    []string  `json:"rooms"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	Revoked  time.Time `json:"revoked,omitzero"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Bot token lifetimes.
const (
	// MaxTokenTTL bounds bot access tokens; MaxRefreshTTL bot refresh tokens.
	MaxTokenTTL   = auth.MaxBotAccessTTL
	MaxRefreshTTL = auth.MaxBotRefreshTTL
	// DefaultTokenTTL and DefaultRefreshTTL apply when TokenRequest.TTL is 0.
	DefaultTokenTTL   = 24 * time.Hour
	DefaultRefreshTTL = 90 * 24 * time.Hour
)

// ErrBadRequest wraps every refusal caused by the request itself (an
// invalid name, role or ttl), as opposed to a failure of the store.
var ErrBadRequest = errors.New("admin: bad request")

// Ops implements Admin over an open store and signing keys.
type Ops struct {
	Store    store.Backend
	Keys     *auth.Keys
	Bots     *auth.Bots
	Password auth.Params // zero means auth.DefaultParams
	// Audit records what an operation did; nil means no audit.
	Audit func(kind, user, detail string)
	// Revoked, when set, is told that credentials of user were revoked,
	// with a reason for the user, so that a running server ends the live
	// sessions they opened at once: all of the user's when login is empty
	// (the account deleted, disabled, given another role, or its second
	// factor reset), else those of one sign-in or bot token (its password
	// changed, a bot token revoked).
	Revoked func(user, login, reason string)
}

// Reasons given to users whose sessions an admin operation ended.
const (
	ReasonDeleted      = "your account was deleted"
	ReasonDisabled     = "your account was disabled"
	ReasonRole         = "your role changed; connect again"
	ReasonTOTPReset    = "your two-factor authentication was reset; sign in again"
	ReasonPassword     = "an administrator changed your password; sign in again"
	ReasonTokenRevoked = "an administrator revoked this bot's token"
)

func (o *Ops) revoked(user, login, reason string) {
	if o.Revoked != nil {
		o.Revoked(user, login, reason)
	}
}

var _ Admin = (*Ops)(nil)

var roles = map[string]bool{proto.RoleUser: true, proto.RoleAdmin: true, proto.RoleRecorder: true}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// refusal is an error whose message is all an operator needs to read,
// and which is kind for errors.Is: the socket client's for the server's
// message (which names kind already), and an unknown user's or token's.
type refusal struct {
	kind error
	msg  string
}

func (e refusal) Error() string { return e.msg }
func (e refusal) Unwrap() error { return e.kind }

// noUser names the user that err, when it is store.ErrNotFound, did not
// find; the store's own message names the operation, not the user.
func noUser(name string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return refusal{store.ErrNotFound, fmt.Sprintf("no user %q (khadga user list shows the users)", name)}
	}
	return err
}

func (o *Ops) audit(kind, user, detail string) {
	if o.Audit != nil {
		o.Audit(kind, user, detail)
	}
}

// hash hashes a password with the configured argon2id cost.
func (o *Ops) hash(password string) (string, error) {
	params := o.Password
	if params == (auth.Params{}) {
		params = auth.DefaultParams
	}
	return params.Hash(password)
}

// CheckNewUser reports what AddUser would refuse in a name and role
// (ErrBadRequest), so that a command can refuse them before it asks for
// the password or makes a store.
func CheckNewUser(name, role string) error {
	if err := proto.ValidUsername(name); err != nil {
		return badRequest("%v", err)
	}
	if role != proto.RoleUser && role != proto.RoleAdmin {
		return badRequest("role must be user or admin")
	}
	return nil
}

// ListUsers lists every user.
func (o *Ops) ListUsers(context.Context) ([]UserInfo, error) {
	us, err := o.Store.ListUsers()
	if err != nil {
		return nil, err
	}
	out := make([]UserInfo, len(us))
	for i, u := range us {
		out[i] = UserInfo{Name: u.Name, Role: u.Role, Disabled: u.Disabled, Created: u.Created, Bot: u.Bot,
			TwoFactor: u.TOTP != nil && u.TOTP.Enabled, Email: u.Email, EmailConfirmed: u.EmailVerified}
	}
	return out, nil
}

// AddUser creates a user with a password and a role (user or admin;
// recorders are bots and get tokens, not passwords).
func (o *Ops) AddUser(_ context.Context, name, password, role string) error {
	if err := CheckNewUser(name, role); err != nil {
		return err
	}
	if err := proto.ValidPassword(password); err != nil {
		return badRequest("%v", err)
	}
	hash, err := o.hash(password)
	if err != nil {
		return err
	}
	if err := o.Store.CreateUser(store.User{Name: name, PasswordHash: hash, Role: role, Created: time.Now().UTC()}); err != nil {
		return o.whyTaken(name, err)
	}
	o.audit("admin-add-user", name, "role "+role)
	return nil
}

// whyTaken says, when err is ErrUserExists, whether the name is an account
// or held for bot tokens.
func (o *Ops) whyTaken(name string, err error) error {
	if !errors.Is(err, store.ErrUserExists) {
		return err
	}
	if u, gerr := o.Store.GetUser(name); gerr == nil && u.Bot {
		return fmt.Errorf("%w: %s is a bot's name (khadga token list); bots sign in with tokens", err, name)
	}
	return err
}

// errBotName refuses to give a bot's name what only an account has.
func errBotName(name string) error {
	return badRequest("%s is a bot's name (khadga token list): it has no password or role of its own", name)
}

// DeleteUser deletes a user and revokes its refresh tokens. A name held
// for bots is refused while tokens of it work (revoke them first: the name
// would be free for anyone to pass for the bot); an account whose name
// live bot tokens share becomes a held name.
func (o *Ops) DeleteUser(_ context.Context, name string) error {
	u, err := o.Store.GetUser(name)
	if err != nil {
		return noUser(name, err)
	}
	live, err := o.Bots.Live(name)
	if err != nil {
		return err
	}
	if u.Bot && live > 0 {
		return badRequest("%s is held for %d bot token(s) that still work: revoke them first (khadga token list, khadga token revoke ID)", name, live)
	}
	// The account's refresh-token families go with it, in the same step.
	if _, err := o.Store.DeleteUser(name); err != nil {
		return err
	}
	o.audit("admin-delete-user", name, "")
	o.revoked(name, "", ReasonDeleted)
	if live > 0 {
		return o.Bots.HoldName(name)
	}
	return nil
}

// SetDisabled disables (or enables) a user. Disabling revokes its refresh
// tokens, so it is signed out when its access token expires.
func (o *Ops) SetDisabled(_ context.Context, name string, disabled bool) error {
	err := o.Store.UpdateUser(name, func(u *store.User) error { u.Disabled = disabled; return nil })
	if err != nil {
		return noUser(name, err)
	}
	o.audit("admin-disable-user", name, fmt.Sprintf("disabled=%t", disabled))
	if disabled {
		err := o.Store.RevokeUserFamilies(name)
		o.revoked(name, "", ReasonDisabled)
		return err
	}
	return nil
}

// SetRole changes a user's role. Live sessions end (Revoked) and come
// back with the new role; tokens carry it from their next refresh.
func (o *Ops) SetRole(_ context.Context, name, role string) error {
	if role != proto.RoleUser && role != proto.RoleAdmin {
		return badRequest("role must be user or admin")
	}
	err := o.Store.UpdateUser(name, func(u *store.User) error {
		if u.Bot {
			return errBotName(name)
		}
		u.Role = role
		return nil
	})
	if err == nil {
		o.audit("admin-role", name, "role "+role)
		o.revoked(name, "", ReasonRole)
	}
	return noUser(name, err)
}

// ResetTOTP turns a user's second factor off, for someone who lost both
// the authenticator and the recovery codes. It also revokes the user's
// refresh tokens.
func (o *Ops) ResetTOTP(_ context.Context, name string) error {
	err := o.Store.UpdateUser(name, func(u *store.User) error { u.TOTP = nil; return nil })
	if err != nil {
		return noUser(name, err)
	}
	o.audit("admin-reset-totp", name, "")
	err = o.Store.RevokeUserFamilies(name)
	o.revoked(name, "", ReasonTOTPReset)
	return err
}

// MintToken mints and records a bot token. The recorder role is granted
// only here: the server refuses it to anyone without such a token.
func (o *Ops) MintToken(_ context.Context, r TokenRequest) (Token, error) {
	if err := proto.ValidUsername(r.User); err != nil {
		return Token{}, badRequest("%v", err)
	}
	if !roles[r.Role] {
		return Token{}, badRequest("role must be user, admin or recorder")
	}
	limit := MaxTokenTTL
	if r.Refresh {
		limit = MaxRefreshTTL
	}
	switch {
	case r.TTL == 0 && r.Refresh:
		r.TTL = DefaultRefreshTTL
	case r.TTL == 0:
		r.TTL = DefaultTokenTTL
	case r.TTL < time.Second || r.TTL > limit:
		return Token{}, badRequest("ttl must be between 1s and %v", limit)
	}
	for _, room := range r.Rooms {
		if err := proto.ValidRoom(room); err != nil {
			return Token{}, badRequest("%v", err)
		}
	}
	if r.Role == proto.RoleRecorder && len(r.Rooms) == 0 {
		return Token{}, badRequest("a recorder token must name the rooms it may join (--room)")
	}
	if err := o.botName(r.User, r.ShareAccount); err != nil {
		return Token{}, err
	}
	tok, rec, err := o.Bots.Mint(auth.BotRequest{User: r.User, Role: r.Role, Rooms: r.Rooms, TTL: r.TTL, Refresh: r.Refresh})
	if errors.Is(err, store.ErrTooManyBotTokens) {
		return Token{}, badRequest("%v", err)
	}
	if err != nil {
		return Token{}, err
	}
	o.audit("admin-token", r.User, fmt.Sprintf("id %s kind %s role %s rooms %v ttl %v", rec.ID, rec.Kind, r.Role, r.Rooms, r.TTL))
	return Token{Token: tok, ID: rec.ID, Expires: rec.Expires}, nil
}

// botName holds name for a bot (auth.Bots.HoldName). An account of that
// name is refused unless share says the admin means the bot to share it
// (and its connection limit): someone may have registered the name a bot
// was meant to have.
func (o *Ops) botName(name string, share bool) error {
	u, err := o.Store.GetUser(name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return o.Bots.HoldName(name)
	case err != nil:
		return err
	case !u.Bot && !share:
		return badRequest("%s is an account (role %s, created %s): give the bot a name of its own, or pass --share-account if it is meant to share this account's name and connection limit",
			name, u.Role, u.Created.Format(time.DateOnly))
	}
	return nil
}

// ListTokens lists the recorded bot tokens, expired ones until the server
// purges them.
func (o *Ops) ListTokens(context.Context) ([]TokenInfo, error) {
	ts, err := o.Store.ListBotTokens()
	if err != nil {
		return nil, err
	}
	out := make([]TokenInfo, len(ts))
	for i, t := range ts {
		out[i] = TokenInfo{ID: t.ID, Kind: t.Kind, User: t.User, Role: t.Role, Rooms: t.Rooms,
			Created: t.Created, Expires: t.Expires, Revoked: t.Revoked, LastUsed: t.LastUsed}
	}
	return out, nil
}

// RevokeToken revokes a bot token: it buys no more access tokens, the
// access tokens it carries are refused, and the sessions they opened end.
func (o *Ops) RevokeToken(_ context.Context, id string) error {
	if id == "" || len(id) > store.MaxNameLen {
		return badRequest("a token id, as khadga token list shows it")
	}
	rec, err := o.Bots.Revoke(id)
	if errors.Is(err, store.ErrNotFound) {
		return refusal{store.ErrNotFound, fmt.Sprintf("no bot token %q (khadga token list shows their ids)", id)}
	}
	if err != nil {
		return err
	}
	o.audit("admin-token-revoke", rec.User, "id "+id)
	o.revoked(rec.User, rec.ID, ReasonTokenRevoked)
	return nil
}

// SetPassword sets a user's password, for someone who forgot theirs. The
// user's sign-ins end: their refresh tokens are revoked and the sessions
// they opened closed. Bot tokens under the same name are not touched.
func (o *Ops) SetPassword(_ context.Context, name, password string) error {
	if err := proto.ValidPassword(password); err != nil {
		return badRequest("%v", err)
	}
	hash, err := o.hash(password)
	if err != nil {
		return err
	}
	err = o.Store.UpdateUser(name, func(u *store.User) error {
		if u.Bot {
			return errBotName(name)
		}
		u.PasswordHash = hash
		return nil
	})
	if err != nil {
		return noUser(name, err)
	}
	o.audit("admin-password", name, "")
	logins, err := o.Store.RevokeUserFamilyIDs(name)
	for _, l := range logins {
		o.revoked(name, l, ReasonPassword)
	}
	return err
}

// ListKeys describes the signing keys.
func (o *Ops) ListKeys(context.Context) ([]auth.KeyInfo, error) { return o.Keys.List() }

// RotateKey makes a new signing key. The old one keeps verifying until its
// tokens expire; sessions stay connected.
func (o *Ops) RotateKey(context.Context) (string, error) {
	kid, err := o.Keys.Rotate()
	if err == nil {
		o.audit("admin-key-rotate", "", "new kid "+kid)
	}
	return kid, err
}

// RetireKey stops a key from verifying at once, for a key that leaked:
// its tokens are refused and the sessions they opened end (the server's
// KeysOptions.Retired). The signing key cannot be retired; rotate first.
func (o *Ops) RetireKey(_ context.Context, kid string) error {
	if kid == o.Keys.SigningKID() {
		return badRequest("key %s signs new tokens: rotate first (khadga keys rotate), then retire it", kid)
	}
	err := o.Keys.Retire(kid)
	if errors.Is(err, auth.ErrUnknownKey) {
		return fmt.Errorf("%w: no active signing key %q", store.ErrNotFound, kid)
	}
	if err == nil {
		o.audit("admin-key-retire", "", "kid "+kid)
	}
	return err
}

// Backup writes a consistent copy of the store to w while it stays in use.
func (o *Ops) Backup(_ context.Context, w io.Writer) (int64, error) {
	n, err := o.Store.WriteTo(w)
	if err == nil {
		o.audit("admin-backup", "", fmt.Sprintf("%d bytes", n))
	}
	return n, err
}
