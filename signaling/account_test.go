package signaling_test

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/hub"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store"
)

// TestPasswordChange: a signed-in user changes the password with the
// current one. A wrong current password, a too short new one or no token
// change nothing; afterwards only the new password signs in, every older
// session's refresh token is revoked, and the answer's tokens work.
func TestPasswordChange(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	first := s.User(t, "alice")
	second := s.Login(t, "alice", password)
	bearer := []string{"Authorization", "Bearer " + first.AccessToken}
	const newPassword = "a brand new passphrase"
	for _, c := range []struct {
		name   string
		body   map[string]string
		header []string
		status int
	}{
		{"wrong current password", map[string]string{"password": "not my password", "new_password": newPassword}, bearer, 401},
		{"new one too short", map[string]string{"password": password, "new_password": "short"}, bearer, 400},
		{"no token", map[string]string{"password": password, "new_password": newPassword}, nil, 401},
	} {
		if code, body := s.Post(t, "/api/password", c.body, c.header...); code != c.status {
			t.Fatalf("%s: %d %s, want %d", c.name, code, body, c.status)
		}
	}
	s.Login(t, "alice", password) // unchanged so far
	code, body := s.Post(t, "/api/password", map[string]string{"password": password, "new_password": newPassword}, bearer...)
	var fresh signalingtest.Tokens
	if code != 200 || json.Unmarshal(body, &fresh) != nil || fresh.AccessToken == "" || fresh.RefreshToken == "" {
		t.Fatalf("change: %d %s", code, body)
	}
	if code, body := s.Post(t, "/api/login", map[string]string{"username": "alice", "password": password}); code != 401 {
		t.Fatalf("the old password still signs in: %d %s", code, body)
	}
	s.Login(t, "alice", newPassword)
	for name, rt := range map[string]string{"first": first.RefreshToken, "second": second.RefreshToken} {
		if code, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": rt}); code != 401 {
			t.Errorf("the %s session's refresh token still works: %d", name, code)
		}
	}
	// Connections authenticate against the store: the old sign-ins' access
	// tokens no longer open one, the new one does.
	if code := dialWith(t, s, second.AccessToken, nil); code != http.StatusUnauthorized {
		t.Errorf("another sign-in's access token after the change: %d, want 401", code)
	}
	if code := dialWith(t, s, fresh.AccessToken, nil); code != http.StatusSwitchingProtocols {
		t.Errorf("the new access token: %d, want 101", code)
	}
	if code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": fresh.RefreshToken}); code != 200 {
		t.Fatalf("the new refresh token: %d %s", code, body)
	}
}

// TestPasswordChangeEndsOtherSessions: the live session of another sign-in
// ends with the reason when the password changes; the session that changed
// it goes on.
func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	if _, ok := any((*hub.Hub)(nil)).(interface {
		CloseLogin(string, string, proto.Code, string) int
	}); !ok {
		t.Skip("the hub has no CloseLogin(user, login string, code proto.Code, reason string) int yet (signaling/revoke.go, sessionCloser)")
	}
	s := signalingtest.Start(t, signalingtest.Options{})
	mine := s.User(t, "alice")
	other := s.Login(t, "alice", password)
	here, there := s.Connect(t, mine.AccessToken, nil), s.Connect(t, other.AccessToken, nil)
	if code, body := s.Post(t, "/api/password", map[string]string{"password": password, "new_password": "a brand new passphrase"},
		"Authorization", "Bearer "+mine.AccessToken); code != 200 {
		t.Fatalf("change: %d %s", code, body)
	}
	e := there.ExpectError(proto.CodeRevoked, "")
	if err := there.Closed(); signalingtest.CloseCode(err) != proto.CloseRevoked || !strings.Contains(e.Message, "password was changed") {
		t.Fatalf("the other sign-in's session: %v, error %q", err, e.Message)
	}
	here.Send(&proto.Message{Type: proto.TypePing, ID: "p1"})
	here.Expect(proto.TypePong)
}

// clock is a test clock for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var linkRE = regexp.MustCompile(`http://\S+/api/verify-email\?\S+`)

// TestResendVerification: a user whose link expired (and who mistyped the
// address) gets a new link at the corrected address with the password,
// and signs in after opening it; the old link stays dead. Resends are
// refused with a wrong password, once confirmed, past the rate limit
// (until time passes), and on a server without email checks.
func TestResendVerification(t *testing.T) {
	capture, smtpAddr := startSMTP(t)
	clk := &clock{now: time.Now()}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org", Now: clk.Now,
	}})
	creds := map[string]string{"username": "erin", "password": password, "email": "erin@exmaple.org"}
	if c, b := s.Post(t, "/api/register", creds); c != 201 {
		t.Fatalf("register: %d %s", c, b)
	}
	stale := linkRE.FindString(capture.nextMail(t))
	clk.add(signaling.EmailLinkTTL + time.Hour)
	if resp, err := httpClientNoRedirect.Get(stale); err != nil || resp.StatusCode != 400 {
		t.Fatalf("expired link: %v %v", resp, err)
	}
	if c, b := s.Post(t, "/api/resend-verification", map[string]string{"username": "erin", "password": "not the password"}); c != 401 {
		t.Fatalf("resend with a wrong password: %d %s", c, b)
	}
	if c, b := s.Post(t, "/api/resend-verification", map[string]string{"username": "erin", "password": password, "email": "erin@example.org"}); c != 202 {
		t.Fatalf("resend: %d %s", c, b)
	}
	msg := capture.nextMail(t)
	if !strings.Contains(msg, "To: erin@example.org\r\n") {
		t.Fatalf("the new link did not go to the corrected address:\n%s", msg)
	}
	if resp, err := httpClientNoRedirect.Get(stale); err != nil || resp.StatusCode != 400 {
		t.Fatalf("the old link came back to life: %v %v", resp, err)
	}
	resp, err := httpClientNoRedirect.Get(linkRE.FindString(msg))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the new link: %v %v", resp, err)
	}
	s.Login(t, "erin", password)
	if c, b := s.Post(t, "/api/resend-verification", map[string]string{"username": "erin", "password": password}); c != 409 {
		t.Fatalf("resend once confirmed: %d %s", c, b)
	}

	// One address may ask resendBurst (3) times, then once every 10 minutes.
	creds = map[string]string{"username": "frank", "password": password, "email": "frank@example.org"}
	if c, b := s.Post(t, "/api/register", creds); c != 201 {
		t.Fatalf("register: %d %s", c, b)
	}
	capture.nextMail(t)
	delete(creds, "email")
	for i := 0; i < 2; i++ { // erin's resend was the address's first
		if c, b := s.Post(t, "/api/resend-verification", creds); c != 202 {
			t.Fatalf("resend %d: %d %s", i+1, c, b)
		}
		capture.nextMail(t)
	}
	req, _ := http.NewRequest("POST", s.URL+"/api/resend-verification", strings.NewReader(`{"username":"frank","password":"`+password+`"}`))
	req.Header.Set("Content-Type", "application/json")
	over, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	over.Body.Close()
	if over.StatusCode != 429 || over.Header.Get("Retry-After") == "" {
		t.Fatalf("a resend past the limit: %d, Retry-After %q", over.StatusCode, over.Header.Get("Retry-After"))
	}
	clk.add(10 * time.Minute)
	if c, b := s.Post(t, "/api/resend-verification", creds); c != 202 {
		t.Fatalf("resend 10 minutes later: %d %s", c, b)
	}

	plain := signalingtest.Start(t, signalingtest.Options{})
	if c, b := plain.Post(t, "/api/resend-verification", creds); c != 404 {
		t.Fatalf("resend without email checks: %d %s", c, b)
	}
}

// tokenHoldingStore holds, once armed, the first UpdateUser that stores a
// new email token, until released: another request runs meanwhile, as it
// can between two transactions in production.
type tokenHoldingStore struct {
	store.Backend
	armed   atomic.Bool
	paused  chan struct{}
	release chan struct{}
}

func (h *tokenHoldingStore) UpdateUser(name string, fn func(*store.User) error) error {
	if h.armed.Load() {
		if u, err := h.Backend.GetUser(name); err == nil {
			before := string(u.EmailToken)
			if fn(&u) == nil && string(u.EmailToken) != before && h.armed.CompareAndSwap(true, false) {
				close(h.paused)
				<-h.release
			}
		}
	}
	return h.Backend.UpdateUser(name, fn)
}

// TestVerifyLinkConfirmsOnlyItsAddress: a resend to a new address, and the
// link mailed to the old one opened meanwhile, cannot leave the account
// confirmed with the new address, which never got a link: the address and
// its token change in one update, and a token is bound to its address.
func TestVerifyLinkConfirmsOnlyItsAddress(t *testing.T) {
	capture, smtpAddr := startSMTP(t)
	bs := openBolt(t)
	hs := &tokenHoldingStore{Backend: bs, paused: make(chan struct{}), release: make(chan struct{})}
	s := signalingtest.Start(t, signalingtest.Options{Store: hs, Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org",
	}})
	creds := map[string]string{"username": "mallory", "password": password, "email": "mallory@attacker.example"}
	if c, b := s.Post(t, "/api/register", creds); c != 201 {
		t.Fatalf("register: %d %s", c, b)
	}
	own := linkRE.FindString(capture.nextMail(t))

	hs.armed.Store(true)
	done := make(chan int, 1)
	go func() {
		c, _ := s.Post(t, "/api/resend-verification", map[string]string{
			"username": "mallory", "password": password, "email": "victim@example.org"})
		done <- c
	}()
	<-hs.paused // the resend is about to store the victim's token
	resp, err := httpClientNoRedirect.Get(own)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	close(hs.release)
	<-done
	u, err := bs.GetUser("mallory")
	if err != nil {
		t.Fatal(err)
	}
	if u.EmailVerified && u.Email != "mallory@attacker.example" {
		t.Fatalf("the link mailed to mallory@attacker.example confirmed %s, which never got one", u.Email)
	}
}

// gatedStore holds the next CreateFamily, once armed, until released.
type gatedStore struct {
	store.Backend
	armed   atomic.Bool
	reached chan struct{}
	release chan struct{}
}

func (g *gatedStore) CreateFamily(f store.Family) error {
	if g.armed.CompareAndSwap(true, false) {
		close(g.reached)
		<-g.release
	}
	return g.Backend.CreateFamily(f)
}

// TestLoginRacingPasswordChange: a login that checked the old password
// just before the password changed does not get a sign-in that outlives
// the change. The change revokes the sign-ins that exist; this login's is
// stored after that (the store holds it there), so the login must notice.
func TestLoginRacingPasswordChange(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "k.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g := &gatedStore{Backend: st, reached: make(chan struct{}), release: make(chan struct{})}
	s := signalingtest.Start(t, signalingtest.Options{Store: g})
	s.Register(t, "alice", password)
	owner := s.Login(t, "alice", password)

	g.armed.Store(true)
	type answer struct {
		code int
		body []byte
	}
	done := make(chan answer, 1)
	go func() { // not s.Post: its t.Fatal must not run off the test's goroutine
		resp, err := http.Post(s.URL+"/api/login", "application/json",
			strings.NewReader(`{"username":"alice","password":"`+password+`"}`))
		if err != nil {
			done <- answer{0, []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		done <- answer{resp.StatusCode, body}
	}()
	select {
	case <-g.reached: // the old password passed; the sign-in is not stored yet
	case <-time.After(signalingtest.Timeout):
		t.Fatal("the login never reached CreateFamily")
	}
	code, body := s.Post(t, "/api/password", map[string]string{"password": password, "new_password": "a brand new password"},
		"Authorization", "Bearer "+owner.AccessToken)
	if code != http.StatusOK {
		t.Fatalf("password change: %d %s", code, body)
	}
	close(g.release)
	a := <-done
	if a.code != http.StatusUnauthorized {
		t.Fatalf("the login with the old password: %d %s, want 401", a.code, a.body)
	}
	fams, err := st.ListFamilies()
	if err != nil {
		t.Fatal(err)
	}
	alive := 0
	for _, f := range fams {
		if !f.Revoked {
			alive++
		}
	}
	if alive != 1 {
		t.Errorf("%d live sign-ins, want 1 (the password change's own)", alive)
	}
}

// TestLapsedAccountFreesItsName: a name registered with an address that
// was never confirmed is free again once the last link expired, and not
// before; the new account owes nothing to the old (its password and its
// link are dead). A confirmed account, or one whose link was resent in
// time, keeps its name.
func TestLapsedAccountFreesItsName(t *testing.T) {
	capture, smtpAddr := startSMTP(t)
	clk := &clock{now: time.Now()}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org", Now: clk.Now,
	}})
	register := func(name, pass, email string) (int, string) {
		c, b := s.Post(t, "/api/register", map[string]string{"username": name, "password": pass, "email": email})
		return c, string(b)
	}
	squatter := "squatter password 1"
	if c, b := register("erin", squatter, "erin@example.org"); c != 201 {
		t.Fatalf("register: %d %s", c, b)
	}
	squattersLink := linkRE.FindString(capture.nextMail(t))
	clk.add(signaling.EmailLinkTTL - time.Minute)
	if c, b := register("erin", password, "erin@example.org"); c != 409 {
		t.Fatalf("register while the link still works: %d %s, want 409", c, b)
	}
	clk.add(2 * time.Minute)
	if c, b := register("erin", password, "erin@example.org"); c != 201 {
		t.Fatalf("register once the link expired: %d %s, want 201", c, b)
	}
	link := linkRE.FindString(capture.nextMail(t))
	if resp, err := httpClientNoRedirect.Get(squattersLink); err != nil || resp.StatusCode != 400 {
		t.Fatalf("the lapsed account's link: %v %v", resp, err)
	}
	if c, b := s.Post(t, "/api/login", map[string]string{"username": "erin", "password": squatter}); c != 401 {
		t.Fatalf("the lapsed account's password: %d %s, want 401", c, b)
	}
	if resp, err := httpClientNoRedirect.Get(link); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the new account's link: %v %v", resp, err)
	}
	s.Login(t, "erin", password)
	clk.add(10 * signaling.EmailLinkTTL)
	if c, b := register("erin", squatter, "erin@example.org"); c != 409 {
		t.Fatalf("register over a confirmed account: %d %s, want 409", c, b)
	}

	// A registrant whose link expired and who asks for a new one in time
	// keeps the name.
	if c, b := register("gus", password, "gus@example.org"); c != 201 {
		t.Fatalf("register: %d %s", c, b)
	}
	capture.nextMail(t)
	clk.add(signaling.EmailLinkTTL + time.Minute)
	if c, b := s.Post(t, "/api/resend-verification", map[string]string{"username": "gus", "password": password}); c != 202 {
		t.Fatalf("resend: %d %s", c, b)
	}
	capture.nextMail(t)
	if c, b := register("gus", squatter, "gus@example.org"); c != 409 {
		t.Fatalf("register over a resent link: %d %s, want 409", c, b)
	}
	if c, b := s.Post(t, "/api/login", map[string]string{"username": "gus", "password": password}); c != 403 {
		t.Fatalf("gus after the refused registration: %d %s, want 403 email_unverified", c, b)
	}
}

// TestLogoutOthers: signing out the other devices takes the password
// (a wrong one changes nothing); then another sign-in's live session ends
// with the reason and its refresh token is refused, while this session's
// socket goes on and the fresh tokens it got work. The password stays.
func TestLogoutOthers(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	mine := s.User(t, "alice")
	other := s.Login(t, "alice", password)
	here, there := s.Connect(t, mine.AccessToken, nil), s.Connect(t, other.AccessToken, nil)
	bearer := []string{"Authorization", "Bearer " + mine.AccessToken}
	if code, body := s.Post(t, "/api/logout-others", map[string]string{"password": "not my password"}, bearer...); code != 401 || !strings.Contains(string(body), "the password is wrong") {
		t.Fatalf("with a wrong password: %d %s, want 401", code, body)
	}
	if code, _ := s.Post(t, "/api/logout-others", map[string]string{"password": password}); code != 401 {
		t.Fatalf("without a token: %d, want 401", code)
	}
	there.Send(&proto.Message{Type: proto.TypePing, ID: "p0"})
	there.Expect(proto.TypePong) // nothing changed yet

	code, body := s.Post(t, "/api/logout-others", map[string]string{"password": password}, bearer...)
	var fresh signalingtest.Tokens
	if code != 200 || json.Unmarshal(body, &fresh) != nil || fresh.RefreshToken == "" {
		t.Fatalf("logout-others: %d %s", code, body)
	}
	e := there.ExpectError(proto.CodeRevoked, "")
	if err := there.Closed(); signalingtest.CloseCode(err) != proto.CloseRevoked || !strings.Contains(e.Message, "signed out from another device") {
		t.Fatalf("the other sign-in's session: %v, error %q", err, e.Message)
	}
	if code, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": other.RefreshToken}); code != 401 {
		t.Errorf("the other sign-in's refresh token: %d, want 401", code)
	}
	here.Send(&proto.Message{Type: proto.TypePing, ID: "p1"})
	here.Expect(proto.TypePong)
	if code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": fresh.RefreshToken}); code != 200 {
		t.Fatalf("this session's new refresh token: %d %s", code, body)
	}
	s.Login(t, "alice", password)
}
