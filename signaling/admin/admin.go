// Package admin holds khadga's admin operations (users, roles, bot tokens,
// backups) and serves them on a local unix socket.
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
	MintToken(ctx context.Context, req TokenRequest) (Token, error)
	Backup(ctx context.Context, w io.Writer) (int64, error)
}

// UserInfo is a user as the admin commands show it: no password hash.
type UserInfo struct {
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	Disabled bool      `json:"disabled"`
	Created  time.Time `json:"created"`
}

// TokenRequest asks for a bot access token (`khadga token`).
type TokenRequest struct {
	User  string        `json:"user"`
	Role  string        `json:"role"`
	Rooms []string      `json:"rooms"`
	TTL   time.Duration `json:"ttl"`
}

// Token is a minted access token.
type Token struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// MaxTokenTTL bounds bot tokens: they cannot be revoked one by one (only by
// rotating the signing key), so they must not live forever.
const MaxTokenTTL = 30 * 24 * time.Hour

// ErrBadRequest wraps every refusal caused by the request itself (an
// invalid name, role or ttl), as opposed to a failure of the store.
var ErrBadRequest = errors.New("admin: bad request")

// Ops implements Admin over an open store and signing keys.
type Ops struct {
	Store    store.Backend
	Keys     *auth.Keys
	Password auth.Params // zero means auth.DefaultParams
	// Audit records what an operation did; nil means no audit.
	Audit func(kind, user, detail string)
	// Revoked, when set, is told that user's credentials were revoked (the
	// account deleted, disabled, given another role, or its second factor
	// reset), with a reason for the user, so that a running server ends
	// the user's live sessions at once.
	Revoked func(user, reason string)
}

// Reasons given to users whose sessions an admin operation ended.
const (
	ReasonDeleted   = "your account was deleted"
	ReasonDisabled  = "your account was disabled"
	ReasonRole      = "your role changed; connect again"
	ReasonTOTPReset = "your two-factor authentication was reset; sign in again"
)

func (o *Ops) revoked(user, reason string) {
	if o.Revoked != nil {
		o.Revoked(user, reason)
	}
}

var _ Admin = (*Ops)(nil)

var roles = map[string]bool{proto.RoleUser: true, proto.RoleAdmin: true, proto.RoleRecorder: true}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

func (o *Ops) audit(kind, user, detail string) {
	if o.Audit != nil {
		o.Audit(kind, user, detail)
	}
}

// ListUsers lists every user.
func (o *Ops) ListUsers(context.Context) ([]UserInfo, error) {
	us, err := o.Store.ListUsers()
	if err != nil {
		return nil, err
	}
	out := make([]UserInfo, len(us))
	for i, u := range us {
		out[i] = UserInfo{Name: u.Name, Role: u.Role, Disabled: u.Disabled, Created: u.Created}
	}
	return out, nil
}

// AddUser creates a user with a password and a role (user or admin;
// recorders are bots and get tokens, not passwords).
func (o *Ops) AddUser(_ context.Context, name, password, role string) error {
	if err := proto.ValidUsername(name); err != nil {
		return badRequest("%v", err)
	}
	if err := proto.ValidPassword(password); err != nil {
		return badRequest("%v", err)
	}
	if role != proto.RoleUser && role != proto.RoleAdmin {
		return badRequest("role must be user or admin")
	}
	params := o.Password
	if params == (auth.Params{}) {
		params = auth.DefaultParams
	}
	hash, err := params.Hash(password)
	if err != nil {
		return err
	}
	if err := o.Store.CreateUser(store.User{Name: name, PasswordHash: hash, Role: role, Created: time.Now().UTC()}); err != nil {
		return err
	}
	o.audit("admin-add-user", name, "role "+role)
	return nil
}

// DeleteUser deletes a user and revokes its refresh tokens.
func (o *Ops) DeleteUser(_ context.Context, name string) error {
	if err := o.Store.DeleteUser(name); err != nil {
		return err
	}
	o.audit("admin-delete-user", name, "")
	err := o.Store.RevokeUserFamilies(name)
	o.revoked(name, ReasonDeleted)
	return err
}

// SetDisabled disables (or enables) a user. Disabling revokes its refresh
// tokens, so it is signed out when its access token expires.
func (o *Ops) SetDisabled(_ context.Context, name string, disabled bool) error {
	err := o.Store.UpdateUser(name, func(u *store.User) error { u.Disabled = disabled; return nil })
	if err != nil {
		return err
	}
	o.audit("admin-disable-user", name, fmt.Sprintf("disabled=%t", disabled))
	if disabled {
		err := o.Store.RevokeUserFamilies(name)
		o.revoked(name, ReasonDisabled)
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
	err := o.Store.UpdateUser(name, func(u *store.User) error { u.Role = role; return nil })
	if err == nil {
		o.audit("admin-role", name, "role "+role)
		o.revoked(name, ReasonRole)
	}
	return err
}

// ResetTOTP turns a user's second factor off, for someone who lost both
// the authenticator and the recovery codes. It also revokes the user's
// refresh tokens.
func (o *Ops) ResetTOTP(_ context.Context, name string) error {
	err := o.Store.UpdateUser(name, func(u *store.User) error { u.TOTP = nil; return nil })
	if err != nil {
		return err
	}
	o.audit("admin-reset-totp", name, "")
	err = o.Store.RevokeUserFamilies(name)
	o.revoked(name, ReasonTOTPReset)
	return err
}

// MintToken signs a bot access token. The recorder role is granted only
// here: the server refuses it to anyone without such a token.
func (o *Ops) MintToken(_ context.Context, r TokenRequest) (Token, error) {
	if err := proto.ValidUsername(r.User); err != nil {
		return Token{}, badRequest("%v", err)
	}
	if !roles[r.Role] {
		return Token{}, badRequest("role must be user, admin or recorder")
	}
	if r.TTL <= 0 || r.TTL > MaxTokenTTL {
		return Token{}, badRequest("ttl must be between 1s and %v", MaxTokenTTL)
	}
	for _, room := range r.Rooms {
		if err := proto.ValidRoom(room); err != nil {
			return Token{}, badRequest("%v", err)
		}
	}
	if r.Role == proto.RoleRecorder && len(r.Rooms) == 0 {
		return Token{}, badRequest("a recorder token must name the rooms it may join (--room)")
	}
	tok, exp, err := o.Keys.IssueAccess(auth.Claims{User: r.User, Role: r.Role, Rooms: r.Rooms}, r.TTL)
	if err != nil {
		return Token{}, err
	}
	o.audit("admin-token", r.User, fmt.Sprintf("role %s rooms %v ttl %v", r.Role, r.Rooms, r.TTL))
	return Token{Token: tok, Expires: exp}, nil
}

// Backup writes a consistent copy of the store to w while it stays in use.
func (o *Ops) Backup(_ context.Context, w io.Writer) (int64, error) {
	n, err := o.Store.WriteTo(w)
	if err == nil {
		o.audit("admin-backup", "", fmt.Sprintf("%d bytes", n))
	}
	return n, err
}
