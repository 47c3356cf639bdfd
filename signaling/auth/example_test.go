package auth_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/store"
)

// Example shows the server's sign-in flow: check the password, start a
// session, verify the access token, rotate the refresh token, and hand out
// a WebSocket ticket.
func Example() {
	dir, _ := os.MkdirTemp("", "khadga-example")
	defer os.RemoveAll(dir)
	st, err := store.Open(filepath.Join(dir, "khadga.db"), store.Options{})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	hash, _ := auth.HashPassword("correct horse battery")
	_ = st.CreateUser(store.User{Name: "ann", PasswordHash: hash, Role: "user"})

	keys, _ := auth.NewKeys(st, auth.KeysOptions{})
	sessions := auth.NewSessions(st, keys, auth.SessionsOptions{})
	limiter := auth.NewLoginLimiter(auth.LimiterOptions{})
	tickets := auth.NewTickets(auth.TicketsOptions{})

	// POST /api/login
	now := time.Now()
	if _, retry := limiter.Check("192.0.2.1", "ann", now); retry > 0 {
		return // 429, Retry-After: retry
	}
	u, err := st.GetUser("ann")
	if err != nil {
		auth.DummyVerify("correct horse battery") // same cost as a real check
		return
	}
	if ok, _ := auth.VerifyPassword(u.PasswordHash, "correct horse battery"); !ok || u.Disabled {
		limiter.Failure("192.0.2.1", "ann", now)
		return
	}
	limiter.Success("192.0.2.1", "ann", now)
	pair, _ := sessions.Login(u)

	// Authorization: Bearer <access>
	claims, _ := keys.VerifyAccess(pair.AccessToken)
	fmt.Println(claims.User, claims.Role, pair.ExpiresIn)

	// POST /api/refresh: the old refresh token stops working.
	next, _ := sessions.Refresh(pair.RefreshToken)
	_, err = sessions.Refresh(pair.RefreshToken)
	fmt.Println(next.RefreshToken != pair.RefreshToken, err != nil)

	// POST /api/ws-ticket, then GET /ws?ticket=...
	ticket, _ := tickets.Issue(claims, "192.0.2.1")
	c, ok := tickets.Redeem(ticket, time.Now())
	fmt.Println(c.User, ok)
	// Output:
	// ann user 900
	// true true
	// ann true
}
