// Package storetest is the conformance suite of the store contract,
// store.Backend. Every implementation runs it from its own tests, with a
// Factory that makes a fresh place to keep a store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Config{New: func(t *testing.T) storetest.Opener {
//			dir := t.TempDir()
//			return func(t *testing.T, lim storetest.Limits) store.Backend { ... open in dir ... }
//		}})
//	}
//
// The suite checks every method, its errors (not found, exists, invalid,
// reuse), concurrency (one refresh token rotated by many goroutines, and
// by two "nodes" when the backend can be opened twice), read-modify-write
// retries under contention, and that closing and reopening keeps
// everything. A method added to store.Backend gets its case here.
package storetest

import (
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// Limits are the bounds a case opens its store with; zero means the
// backend's default.
type Limits struct {
	AuditMax           int
	MaxFamiliesPerUser int
}

// Opener opens the store kept in one place. Called again after Close it
// opens the same data, as a restarted server would. The store is closed at
// the end of the test if the case did not close it.
type Opener func(t *testing.T, lim Limits) store.Backend

// Config describes the backend under test.
type Config struct {
	// New makes a fresh, empty place and returns its Opener.
	New func(t *testing.T) Opener
	// Nodes says that Opener may be called while a store of the same
	// place is open, as on another node (JetStream KV: another NATS
	// connection). bbolt locks its file, so it runs without.
	Nodes bool
}

// Run runs the whole suite, each case as a subtest.
func Run(t *testing.T, c Config) {
	cases := []struct {
		name string
		run  func(*testing.T, Config)
	}{
		{"Users", testUsers},
		{"UserNames", testUserNames},
		{"UpdateUserRetried", testUpdateUserRetried},
		{"FamilyRotation", testFamilyRotation},
		{"FamilyNeedsUser", testFamilyNeedsUser},
		{"FamilyExpiryRevokePurge", testFamilyExpiryRevokePurge},
		{"FamilyCapAndDeleteUser", testFamilyCapAndDeleteUser},
		{"DeleteUserIf", testDeleteUserIf},
		{"ConcurrentRotateOneWins", testConcurrentRotateOneWins},
		{"TwoNodesRotateOneWins", testTwoNodesRotateOneWins},
		{"ReuseRevokesOnEveryNode", testReuseRevokesOnEveryNode},
		{"SigningKeys", testSigningKeys},
		{"UpdateSigningKey", testUpdateSigningKey},
		{"BotTokens", testBotTokens},
		{"SecretGetOrCreate", testSecretGetOrCreate},
		{"SecretConcurrentAgree", testSecretConcurrentAgree},
		{"UpdateSecret", testUpdateSecret},
		{"Rooms", testRooms},
		{"RoomClaimsRace", testRoomClaimsRace},
		{"WatchSecret", testWatchSecret},
		{"WatchSigningKeys", testWatchSigningKeys},
		{"AuditLog", testAuditLog},
		{"AuditTruncatesAndStamps", testAuditTruncatesAndStamps},
		{"ReopenKeepsEverything", testReopenKeepsEverything},
		{"BackupIsValidStore", testBackupIsValidStore},
		{"CopyKeepsEverything", testCopyKeepsEverything},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, c) })
	}
}

// open makes a fresh place and opens a store there.
func open(t *testing.T, c Config, lim Limits) (store.Backend, Opener) {
	t.Helper()
	o := c.New(t)
	return o(t, lim), o
}

// t0 is the suite's clock: fixed, so expiry is decided by the arguments.
var t0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

func newFamily(id, user string, now time.Time) store.Family {
	return store.Family{ID: id, User: user, Current: []byte("h0"), Created: now, Expires: now.Add(time.Hour)}
}

func mustCreateUsers(t *testing.T, s store.Backend, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := s.CreateUser(store.User{Name: n, Role: "user"}); err != nil {
			t.Fatalf("CreateUser(%q): %v", n, err)
		}
	}
}

func mustCreateFamilies(t *testing.T, s store.Backend, fams ...store.Family) {
	t.Helper()
	for _, f := range fams {
		if err := s.CreateFamily(f); err != nil {
			t.Fatalf("CreateFamily(%s): %v", f.ID, err)
		}
	}
}
