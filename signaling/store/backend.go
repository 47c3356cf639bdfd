package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// Backend is the store contract: everything package signaling, auth, admin
// and the commands ask of durable state. *Store (bbolt, one process) and
// kvstore.Store (NATS JetStream key-value, many nodes) implement it, and
// package storetest's conformance suite runs against both, so the two
// behave the same down to their errors.
//
// Every method is one atomic step: a change is either wholly visible to
// every later call, on every node, or not at all. Read-modify-write
// methods (UpdateUser, RotateFamily, RevokeFamily, RevokeUserFamilyIDs,
// CreateFamily's cap, RetireSigningKey, UpdateSigningKey, UpdateBotToken,
// UpdateSecret, PurgeExpired, PurgeExpiredBotTokens, SetRoom with its
// per-owner limit, UpdateRoom, DeleteRoom) retry
// by themselves when another writer got there first, and return
// ErrConflict only when they lost too many times in a row. Their fn
// arguments may therefore run more than once: they must change only
// what they are given.
//
// A method that needs a store which cannot be reached (the NATS cluster is
// down or has lost its quorum) fails at once, or after a short timeout,
// with an error wrapping ErrUnavailable, which the HTTP API answers with
// 503.
//
// Adding state: add the method here, to *Store (bbolt) and to kvstore.Store,
// a case to the conformance suite (storetest), and the records to Copy when
// backups and migrations must carry them. Whoever adds the method writes
// both implementations.
type Backend interface {
	// Users (accounts, with their TOTP and email state).
	CreateUser(u User) error
	GetUser(name string) (User, error)
	UpdateUser(name string, fn func(*User) error) error
	DeleteUser(name string) (logins []string, err error)
	// DeleteUserIf is DeleteUser in the same step as check, which sees
	// the record as it is then; an error from it deletes nothing and is
	// returned (wrapped).
	DeleteUserIf(name string, check func(User) error) (logins []string, err error)
	ListUsers() ([]User, error)

	// Refresh-token families.
	CreateFamily(f Family) error
	GetFamily(id string) (Family, error)
	RotateFamily(id string, presentedHash, nextHash []byte, now time.Time) (Family, error)
	RevokeFamily(id string) error
	RevokeUserFamilies(user string) error
	RevokeUserFamilyIDs(user string) ([]string, error)
	PurgeExpired(now time.Time) (int, error)
	ListFamilies() ([]Family, error)

	// JWT signing keys.
	SigningKeys() ([]SigningKey, error)
	AddSigningKey(k SigningKey) error
	RetireSigningKey(id string) error
	UpdateSigningKey(id string, fn func(*SigningKey) error) error

	// Bot tokens (`khadga token`), so that they can be listed and revoked.
	CreateBotToken(t BotToken) error
	GetBotToken(id string) (BotToken, error)
	ListBotTokens() ([]BotToken, error)
	UpdateBotToken(id string, fn func(*BotToken) error) (BotToken, error)
	PurgeExpiredBotTokens(now time.Time) (int, error)

	// Named secrets (the TURN REST secrets).
	Secret(name string, generate func() ([]byte, error)) ([]byte, error)
	UpdateSecret(name string, fn func(old []byte) ([]byte, error)) ([]byte, error)
	Secrets() (map[string][]byte, error)

	// Room settings: claimed rooms, their owners, caps and invite hashes.
	// DeleteUser releases the user's rooms.
	GetRoom(name string) (Room, error)
	SetRoom(name, owner string, maxOwned int, fn func(*Room) error) (Room, bool, error)
	UpdateRoom(name, owner string, fn func(*Room) error) (Room, error)
	DeleteRoom(name, owner string) error
	RoomsOwnedBy(owner string) ([]Room, error)
	ListRooms() ([]Room, error)

	// Changes made by other nodes. Each calls fn at the start (WatchSecret
	// with the secret's value, if it exists) and after every change any
	// node makes, until ctx ends, one call at a time. A store of one
	// process has no other writers: after the first call it waits for ctx.
	// (The in-process users reload after their own changes.)
	WatchSigningKeys(ctx context.Context, fn func())
	WatchSecret(ctx context.Context, name string, fn func(value []byte))

	// The bounded audit log.
	Audit(ev AuditEvent) error
	AuditLog(limit int) ([]AuditEvent, error)

	// WriteTo writes a consistent copy in the bbolt file format, which
	// Check verifies and restore and migrate load.
	WriteTo(w io.Writer) (int64, error)
	// Ping checks that the store can be reached, for readiness probes.
	Ping() error
	Close() error
}

var _ Backend = (*Store)(nil)

var (
	// ErrConflict is returned by a read-modify-write method that lost the
	// race against other writers of the same record too many times in a
	// row; the caller may try again.
	ErrConflict = errors.New("store: too many concurrent changes to one record, try again")
	// ErrUnavailable is returned when the store cannot be reached (the NATS
	// cluster is down or has no JetStream quorum). Nothing was changed, or
	// the change's outcome is unknown if the error came after sending it.
	ErrUnavailable = errors.New("store: unavailable")
)
