package signaling_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store"
)

var resetLinkRE = regexp.MustCompile(`http://\S+/#\S+`)

// resetServer starts a server that checks email addresses, behind a
// trusted proxy (the test) that names each request's client address.
func resetServer(t *testing.T) (*signalingtest.Server, *smtpCapture, *clock) {
	capture, smtpAddr := startSMTP(t)
	clk := &clock{now: time.Now()}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org", Now: clk.Now,
		TrustedProxies: []string{"127.0.0.1/32"},
	}})
	return s, capture, clk
}

// confirmedUser registers user with an address and opens the link.
func confirmedUser(t *testing.T, s *signalingtest.Server, capture *smtpCapture, user string) {
	t.Helper()
	creds := map[string]string{"username": user, "password": password, "email": user + "@example.org"}
	if c, b := s.Post(t, "/api/register", creds, "X-Forwarded-For", "198.51.100."+strconv.Itoa(len(user))); c != 201 {
		t.Fatalf("register %s: %d %s", user, c, b)
	}
	resp, err := httpClientNoRedirect.Get(linkRE.FindString(capture.nextMail(t)))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("verify %s: %v %v", user, resp, err)
	}
}

// resetLink reads the user and token from a reset email.
func resetLink(t *testing.T, msg string) (user, token string) {
	t.Helper()
	link := resetLinkRE.FindString(msg)
	u, err := url.Parse(link)
	if err != nil || link == "" {
		t.Fatalf("no reset link in:\n%s", msg)
	}
	q, _ := url.ParseQuery(u.Fragment)
	return q.Get("reset"), q.Get("token")
}

// otherToken is tok with its first character changed: a token that is
// certainly wrong. (Replacing a fixed suffix is not: 1 in 4,096 tokens
// already ends in "AA".)
func otherToken(tok string) string {
	c := byte('A')
	if tok[0] == c {
		c = 'B'
	}
	return string(c) + tok[1:]
}

// TestPasswordReset: someone who forgot their password gets a single-use
// link at the account's confirmed address and sets a new password with
// it; every sign-in of the account ends. Asking for an unknown account,
// or one without a confirmed address, answers the same and sends nothing.
func TestPasswordReset(t *testing.T) {
	s, capture, _ := resetServer(t)
	confirmedUser(t, s, capture, "gina")
	old := s.Login(t, "gina", password)
	live := s.Connect(t, old.AccessToken, nil)
	if c, b := s.Post(t, "/api/register", map[string]string{"username": "hugo", "password": password, "email": "hugo@example.org"}); c != 201 {
		t.Fatalf("register hugo: %d %s", c, b)
	}
	capture.nextMail(t) // hugo's verification link, never opened

	ask := func(user string) []byte {
		t.Helper()
		c, b := s.Post(t, "/api/password-reset", map[string]string{"username": user}, "X-Forwarded-For", "198.51.100.2")
		if c != http.StatusAccepted {
			t.Fatalf("reset for %s: %d %s", user, c, b)
		}
		return b
	}
	// Nothing is sent for nobody or for hugo: the next email is gina's.
	if a, b := string(ask("nobody")), string(ask("hugo")); a != b {
		t.Errorf("the answers differ: %s / %s", a, b)
	}
	ask("gina")
	msg := capture.nextMail(t)
	if !strings.Contains(msg, "To: gina@example.org\r\n") {
		t.Fatalf("the reset email did not go to gina's address:\n%s", msg)
	}
	user, token := resetLink(t, msg)
	if user != "gina" || len(token) < 40 {
		t.Fatalf("link for %q with token %q", user, token)
	}

	confirm := func(token, pw string) (int, []byte) {
		return s.Post(t, "/api/password-reset/confirm", map[string]string{"username": "gina", "token": token, "new_password": pw},
			"X-Forwarded-For", "198.51.100.3")
	}
	if c, b := confirm(token, "short"); c != 400 || !strings.Contains(string(b), "new password") {
		t.Errorf("a short password: %d %s", c, b)
	}
	if c, b := confirm(otherToken(token), "a new long password"); c != 400 || !strings.Contains(string(b), "link_invalid") {
		t.Errorf("a wrong token: %d %s", c, b)
	}
	if c, b := confirm(token, "a new long password"); c != 200 {
		t.Fatalf("reset: %d %s", c, b)
	}
	e := live.ExpectError(proto.CodeRevoked, "")
	if !strings.Contains(e.Message, "password") {
		t.Errorf("the live session ended with %q", e.Message)
	}
	if c, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": old.RefreshToken}); c != 401 {
		t.Errorf("the old sign-in's refresh token: %d, want 401", c)
	}
	if c, _ := s.Post(t, "/api/login", map[string]string{"username": "gina", "password": password}); c != 401 {
		t.Errorf("the old password: %d, want 401", c)
	}
	s.Login(t, "gina", "a new long password")
	if c, b := confirm(token, "yet another password"); c != 400 {
		t.Errorf("the link used twice: %d %s", c, b)
	}
}

// TestPasswordResetLinkDies: a reset link stops working when it expires,
// and every link dies when the password changes, by a reset or otherwise.
// A newer link leaves the older ones working: a stranger asking for a
// link to someone's account does not kill the one its owner is opening.
func TestPasswordResetLinkDies(t *testing.T) {
	s, capture, clk := resetServer(t)
	confirmedUser(t, s, capture, "ivan")
	link := func(addr string) string {
		t.Helper()
		if c, b := s.Post(t, "/api/password-reset", map[string]string{"username": "ivan"}, "X-Forwarded-For", addr); c != 202 {
			t.Fatalf("reset: %d %s", c, b)
		}
		_, tok := resetLink(t, capture.nextMail(t))
		return tok
	}
	confirm := func(tok, pw string) int {
		c, _ := s.Post(t, "/api/password-reset/confirm", map[string]string{"username": "ivan", "token": tok, "new_password": pw},
			"X-Forwarded-For", "203.0.113.9")
		return c
	}
	expired := link("203.0.113.1")
	clk.add(signaling.ResetLinkTTL + time.Minute)
	if c := confirm(expired, "a new long password"); c != 400 {
		t.Errorf("an expired link: %d, want 400", c)
	}
	owners := link("203.0.113.2")
	strangers := link("203.0.113.3")
	if c := confirm(owners, "the owner's new password"); c != 200 {
		t.Fatalf("the owner's link after a stranger asked for another: %d, want 200", c)
	}
	if c := confirm(strangers, "a stranger's password"); c != 400 {
		t.Errorf("another link after a reset: %d, want 400", c)
	}
	s.Login(t, "ivan", "the owner's new password")

	clk.add(signaling.ResetLinkTTL) // a fresh budget
	newer := link("203.0.113.4")
	tok := s.Login(t, "ivan", "the owner's new password")
	if c, b := s.Post(t, "/api/password", map[string]string{"password": "the owner's new password", "new_password": "changed by ivan himself"},
		"Authorization", "Bearer "+tok.AccessToken); c != 200 {
		t.Fatalf("password change: %d %s", c, b)
	}
	if c := confirm(newer, "a new long password"); c != 400 {
		t.Errorf("a link after the password changed: %d, want 400", c)
	}
	s.Login(t, "ivan", "changed by ivan himself")
}

// TestPasswordResetLimits: one client address may ask 20 times, then once
// every 30 s (429 with Retry-After); one account gets at most three links
// in half an hour, whoever asks, and the others hear nothing of it; failed
// confirmations count against the address on their own (10, then one a
// minute); a server without email checks has no reset (404).
func TestPasswordResetLimits(t *testing.T) {
	s, capture, clk := resetServer(t)
	confirmedUser(t, s, capture, "joe")
	confirmedUser(t, s, capture, "kim")
	ask := func(user, addr string) int {
		c, _ := s.Post(t, "/api/password-reset", map[string]string{"username": user}, "X-Forwarded-For", addr)
		return c
	}
	for i := range 20 {
		if c := ask("nobody", "198.51.100.20"); c != 202 {
			t.Fatalf("ask %d: %d", i+1, c)
		}
	}
	if c := ask("nobody", "198.51.100.20"); c != 429 {
		t.Fatalf("a 21st ask from one address: %d, want 429", c)
	}
	// Four asks for joe: three emails. Then kim's is the next email, so
	// the fourth sent none.
	for i := range 4 {
		if c := ask("joe", "198.51.100.21"); c != 202 {
			t.Fatalf("ask %d for joe: %d", i+1, c)
		}
		if i < 3 {
			if msg := capture.nextMail(t); !strings.Contains(msg, "To: joe@example.org") {
				t.Fatalf("email %d:\n%s", i+1, msg)
			}
		}
	}
	ask("kim", "198.51.100.22")
	if msg := capture.nextMail(t); !strings.Contains(msg, "To: kim@example.org") {
		t.Fatalf("after joe's limit, the next email:\n%s", msg)
	}
	clk.add(31 * time.Minute)
	ask("joe", "198.51.100.23")
	if msg := capture.nextMail(t); !strings.Contains(msg, "To: joe@example.org") {
		t.Fatalf("joe's after half an hour:\n%s", msg)
	}

	bad := func(addr string) int {
		c, _ := s.Post(t, "/api/password-reset/confirm", map[string]string{"username": "joe", "token": "guess", "new_password": "a new long password"},
			"X-Forwarded-For", addr)
		return c
	}
	for i := range 10 {
		if c := bad("198.51.100.26"); c != 400 {
			t.Fatalf("wrong token %d: %d, want 400", i+1, c)
		}
	}
	if c := bad("198.51.100.26"); c != 429 {
		t.Fatalf("an 11th wrong token from one address: %d, want 429", c)
	}
	if c := ask("kim", "198.51.100.26"); c != 202 {
		t.Errorf("an ask from an address whose confirmations failed: %d, want 202 (a bucket of its own)", c)
	}
	clk.add(time.Minute)
	if c := bad("198.51.100.26"); c != 400 {
		t.Errorf("a minute later: %d, want 400", c)
	}

	plain := signalingtest.Start(t, signalingtest.Options{})
	if c, b := plain.Post(t, "/api/password-reset", map[string]string{"username": "joe"}); c != 404 || !strings.Contains(string(b), "khadga user passwd") {
		t.Errorf("reset without email checks: %d %s", c, b)
	}
}

// TestPasswordResetMailsBounded: the answer comes before the email is
// sent, and at most four are on their way at once; one asked for past
// that is dropped (and logged), not queued.
func TestPasswordResetMailsBounded(t *testing.T) {
	capture, smtpAddr := startSMTP(t)
	recs := make(logRecords, 256)
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org", Logger: slog.New(recs),
		TrustedProxies: []string{"127.0.0.1/32"},
	}})
	users := []string{"mia", "nils", "olga", "pete", "quinn"}
	for _, u := range users {
		confirmedUser(t, s, capture, u)
	}
	capture.holding.Store(true)
	for i, u := range users {
		if c, b := s.Post(t, "/api/password-reset", map[string]string{"username": u}, "X-Forwarded-For", "203.0.113."+strconv.Itoa(i+1)); c != 202 {
			t.Fatalf("reset for %s: %d %s (the answer waited for the mail?)", u, c, b)
		}
	}
	dropped := false
	for !dropped {
		select {
		case r := <-recs:
			dropped = strings.Contains(r.Message, "password-reset email was dropped")
		default:
			t.Fatal("no fifth email was dropped while four were on their way")
		}
	}
	close(capture.release)
	got := map[string]bool{}
	for range 4 {
		user, _ := resetLink(t, capture.nextMail(t))
		got[user] = true
	}
	if got["quinn"] || len(got) != 4 {
		t.Errorf("emails for %v; want mia, nils, olga and pete", got)
	}
}

// logRecords is a slog handler that hands every record to a channel.
type logRecords chan slog.Record

func (l logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l logRecords) Handle(_ context.Context, r slog.Record) error {
	select {
	case l <- r:
	default: // a full channel drops; the test looks for one record
	}
	return nil
}
func (l logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logRecords) WithGroup(string) slog.Handler      { return l }

// revokeFailing is a store whose RevokeUserFamilyIDs fails as unavailable
// while failing is set; calls counts them.
type revokeFailing struct {
	store.Backend
	failing atomic.Bool
	calls   atomic.Int32
}

func (d *revokeFailing) RevokeUserFamilyIDs(name string) ([]string, error) {
	d.calls.Add(1)
	if d.failing.Load() {
		return nil, fmt.Errorf("revoke: %w", store.ErrUnavailable)
	}
	return d.Backend.RevokeUserFamilyIDs(name)
}

// failAfter makes every call after the next n fail.
type failAfter struct {
	*revokeFailing
	n atomic.Int32
}

func (d *failAfter) RevokeUserFamilyIDs(name string) ([]string, error) {
	if d.n.Add(-1) < 0 {
		d.failing.Store(true)
	}
	return d.revokeFailing.RevokeUserFamilyIDs(name)
}

// TestResetWhileTheStoreFails: a reset whose sign-ins cannot be ended
// before the password changes changes nothing (503), and the link then
// still works and ends them; one whose sign-ins cannot be ended after the
// password changed says that the new password is in place and the other
// sign-ins may live on, never "nothing was changed".
func TestResetWhileTheStoreFails(t *testing.T) {
	capture, smtpAddr := startSMTP(t)
	d := &failAfter{revokeFailing: &revokeFailing{Backend: openBolt(t)}}
	d.n.Store(1 << 30)
	s := signalingtest.Start(t, signalingtest.Options{Store: d, Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org", TrustedProxies: []string{"127.0.0.1/32"},
	}})
	confirmedUser(t, s, capture, "gina")
	intruder := s.Login(t, "gina", password)
	link := func(addr string) string {
		t.Helper()
		s.Post(t, "/api/password-reset", map[string]string{"username": "gina"}, "X-Forwarded-For", addr)
		_, tok := resetLink(t, capture.nextMail(t))
		return tok
	}
	confirm := func(tok, pw string) (int, []byte) {
		return s.Post(t, "/api/password-reset/confirm", map[string]string{"username": "gina", "token": tok, "new_password": pw},
			"X-Forwarded-For", "198.51.100.7")
	}
	tok := link("198.51.100.5")
	d.failing.Store(true)
	if c, b := confirm(tok, "a new long password"); c != 503 || !strings.Contains(string(b), "nothing was changed") {
		t.Fatalf("reset while revoking fails: %d %s, want 503 nothing was changed", c, b)
	}
	d.failing.Store(false)
	if c, b := confirm(tok, "a new long password"); c != 200 {
		t.Fatalf("the retry: %d %s", c, b)
	}
	if c, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": intruder.RefreshToken}); c != 401 {
		t.Errorf("the intruder's sign-in outlived the reset: %d", c)
	}

	// Revoking works before the write and fails after it.
	tok = link("198.51.100.6")
	d.n.Store(1)
	c, b := confirm(tok, "another long password")
	if c != 503 || !strings.Contains(string(b), "new password is in place") {
		t.Fatalf("reset whose second revocation fails: %d %s, want 503 saying the password is in place", c, b)
	}
	d.failing.Store(false)
	d.n.Store(1 << 30)
	s.Login(t, "gina", "another long password")
}

// TestPasswordChangeWhileTheStoreFails: a password change whose sign-ins
// cannot be ended says the new password is in place, not "nothing was
// changed".
func TestPasswordChangeWhileTheStoreFails(t *testing.T) {
	d := &revokeFailing{Backend: openBolt(t)}
	s := signalingtest.Start(t, signalingtest.Options{Store: d})
	tok := s.User(t, "hal")
	d.failing.Store(true)
	c, b := s.Post(t, "/api/password", map[string]string{"password": password, "new_password": "a new long password"},
		"Authorization", "Bearer "+tok.AccessToken)
	if c != 503 || !strings.Contains(string(b), "new password is in place") || d.calls.Load() != 3 {
		t.Fatalf("change while revoking fails: %d %s after %d tries, want 503 saying the password is in place after 3", c, b, d.calls.Load())
	}
	d.failing.Store(false)
	s.Login(t, "hal", "a new long password")
}

// TestPasswordResetOfADisabledAccount: a disabled account gets no link,
// and a link it got before does not work while it is disabled.
func TestPasswordResetOfADisabledAccount(t *testing.T) {
	s, capture, _ := resetServer(t)
	confirmedUser(t, s, capture, "uma")
	confirmedUser(t, s, capture, "vera")
	ask := func(user string) {
		t.Helper()
		if c, b := s.Post(t, "/api/password-reset", map[string]string{"username": user}, "X-Forwarded-For", "198.51.100.30"); c != 202 {
			t.Fatalf("reset for %s: %d %s", user, c, b)
		}
	}
	ask("uma")
	_, tok := resetLink(t, capture.nextMail(t))
	disable := func(on bool) {
		if err := s.Store().UpdateUser("uma", func(u *store.User) error { u.Disabled = on; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	disable(true)
	if c, b := s.Post(t, "/api/password-reset/confirm", map[string]string{"username": "uma", "token": tok, "new_password": "a new long password"}); c != 400 {
		t.Errorf("a disabled account's link: %d %s, want 400", c, b)
	}
	ask("uma")
	ask("vera")
	if user, _ := resetLink(t, capture.nextMail(t)); user != "vera" {
		t.Errorf("a disabled account got a link (the next email is %s's)", user)
	}
	disable(false)
	if c, b := s.Post(t, "/api/password-reset/confirm", map[string]string{"username": "uma", "token": tok, "new_password": "a new long password"}); c != 200 {
		t.Errorf("the link once enabled again: %d %s, want 200", c, b)
	}
}
