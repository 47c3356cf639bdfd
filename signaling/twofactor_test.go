package signaling_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store"
	"github.com/pquerna/otp/totp"
)

func TestTOTP(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{Now: now}})
	tok := s.User(t, "alice")
	authz := []string{"Authorization", "Bearer " + tok.AccessToken}

	code, body := s.Post(t, "/api/totp/enroll", "", authz...)
	if code != 200 {
		t.Fatalf("enroll: %d %s", code, body)
	}
	var e struct {
		Secret     string `json:"secret"`
		OtpauthURL string `json:"otpauth_url"`
		QrPng      string `json:"qr_png"`
	}
	json.Unmarshal(body, &e)
	if e.Secret == "" || !strings.HasPrefix(e.OtpauthURL, "otpauth://totp/") || !strings.HasPrefix(e.QrPng, "data:image/png;base64,") {
		t.Fatalf("enroll answer %s", body)
	}
	// Until confirmed, login needs no code.
	s.Login(t, "alice", password)

	if code, _ := s.Post(t, "/api/totp/confirm", map[string]string{"password": password, "code": "000000"}, authz...); code != 401 {
		t.Fatalf("confirm with a wrong code: %d", code)
	}
	first, _ := totp.GenerateCode(e.Secret, now())
	// The access token alone is not enough: whoever holds a stolen one
	// could bind the account to their authenticator and lock its owner
	// out (neither sign-in nor turning 2FA off works without the code).
	for _, pw := range []string{"", "wrong password"} {
		if code, body := s.Post(t, "/api/totp/confirm", map[string]string{"password": pw, "code": first}, authz...); code != 401 || !strings.Contains(string(body), "unauthorized") {
			t.Fatalf("confirm with password %q: %d %s, want 401 unauthorized", pw, code, body)
		}
	}
	s.Login(t, "alice", password) // still no code asked
	code, body = s.Post(t, "/api/totp/confirm", map[string]string{"password": password, "code": first}, authz...)
	if code != 200 {
		t.Fatalf("confirm: %d %s", code, body)
	}
	var rc struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	json.Unmarshal(body, &rc)
	if len(rc.RecoveryCodes) != 10 {
		t.Fatalf("recovery codes: %s", body)
	}

	login := func(code string) (int, string) {
		c, b := s.Post(t, "/api/login", map[string]string{"username": "alice", "password": password, "code": code})
		return c, string(b)
	}
	if c, b := login(""); c != 401 || !strings.Contains(b, "totp_required") {
		t.Fatalf("login without code: %d %s", c, b)
	}
	// The confirming code was spent: replaying it in the same window fails.
	if c, b := login(first); c != 401 || !strings.Contains(b, "totp_invalid") {
		t.Fatalf("replayed code: %d %s", c, b)
	}
	clock.Add(30)
	next, _ := totp.GenerateCode(e.Secret, now())
	if c, b := login(next); c != 200 {
		t.Fatalf("login with a fresh code: %d %s", c, b)
	}
	if c, _ := login(next); c != 401 {
		t.Fatal("the same code worked twice")
	}
	if c, b := login(rc.RecoveryCodes[3]); c != 200 {
		t.Fatalf("login with a recovery code: %d %s", c, b)
	}
	if c, _ := login(rc.RecoveryCodes[3]); c != 401 {
		t.Fatal("a recovery code worked twice")
	}

	// Disabling needs the password and a code.
	clock.Add(30)
	cur, _ := totp.GenerateCode(e.Secret, now())
	if c, _ := s.Post(t, "/api/totp/disable", map[string]string{"password": "wrong password", "code": cur}, authz...); c != 401 {
		t.Fatalf("disable with a wrong password: %d", c)
	}
	if c, b := s.Post(t, "/api/totp/disable", map[string]string{"password": password, "code": cur}, authz...); c != 204 {
		t.Fatalf("disable: %d %s", c, b)
	}
	if c, b := login(""); c != 200 {
		t.Fatalf("login after disable: %d %s", c, b)
	}
}

// smtpCapture is an in-process SMTP server that keeps what it receives. It
// accepts PLAIN auth with any credentials and records the password, so that
// tests can check the server sent it.
type smtpCapture struct {
	msgs      chan string
	passwords chan string
	// While holding, each message waits for release before it is taken.
	holding atomic.Bool
	release chan struct{}
}

func (b *smtpCapture) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &smtpSession{b}, nil }

type smtpSession struct{ b *smtpCapture }

func (s *smtpSession) Reset()                                 {}
func (s *smtpSession) Logout() error                          { return nil }
func (s *smtpSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *smtpSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s *smtpSession) Data(r io.Reader) error {
	if s.b.holding.Load() {
		<-s.b.release
	}
	b, err := io.ReadAll(r)
	s.b.msgs <- string(b)
	return err
}

// startSMTP runs an in-process SMTP server that captures what it gets,
// and returns it and its address.
func startSMTP(t *testing.T) (*smtpCapture, string) {
	t.Helper()
	capture := &smtpCapture{msgs: make(chan string, 4), passwords: make(chan string, 4), release: make(chan struct{})}
	srv := gosmtp.NewServer(capture)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return capture, ln.Addr().String()
}

func TestEmailVerification(t *testing.T) {
	capture, smtpAddr := startSMTP(t)
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org",
	}})
	creds := map[string]string{"username": "erin", "password": password}
	if c, b := s.Post(t, "/api/register", creds); c != 400 || !strings.Contains(string(b), "email is required") {
		t.Fatalf("register without email: %d %s", c, b)
	}
	creds["email"] = "erin@example.org"
	if c, b := s.Post(t, "/api/register", creds); c != 201 {
		t.Fatalf("register: %d %s", c, b)
	}
	msg := capture.nextMail(t)
	delete(creds, "email")
	if c, b := s.Post(t, "/api/login", creds); c != 403 || !strings.Contains(string(b), "email_unverified") {
		t.Fatalf("login before verifying: %d %s", c, b)
	}
	link := regexp.MustCompile(`http://\S+/api/verify-email\?\S+`).FindString(msg)
	if link == "" || !strings.Contains(msg, "To: erin@example.org") {
		t.Fatalf("no link in the email:\n%s", msg)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/?email-verified=1" {
		t.Fatalf("following the link: %d %v", resp.StatusCode, resp.Header)
	}
	s.Login(t, "erin", password)
	// The link is single-use.
	resp, err = noRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("second use of the link: %d, want 400", resp.StatusCode)
	}
}

// downStore fails every UpdateUser as an unreachable store does while
// down is set.
type downStore struct {
	store.Backend
	down atomic.Bool
}

func (d *downStore) UpdateUser(name string, fn func(*store.User) error) error {
	if d.down.Load() {
		return fmt.Errorf("update user: %w", store.ErrUnavailable)
	}
	return d.Backend.UpdateUser(name, fn)
}

// TestVerifyLinkWhileTheStoreIsDown: a link followed while the store
// cannot be reached is answered 503 with Retry-After, not "invalid", and
// still works afterwards.
func TestVerifyLinkWhileTheStoreIsDown(t *testing.T) {
	capture, smtpAddr := startSMTP(t)
	st, err := store.Open(filepath.Join(t.TempDir(), "k.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := &downStore{Backend: st}
	s := signalingtest.Start(t, signalingtest.Options{Store: d, Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org",
	}})
	if c, b := s.Post(t, "/api/register", map[string]string{"username": "erin", "password": password, "email": "erin@example.org"}); c != 201 {
		t.Fatalf("register: %d %s", c, b)
	}
	link := regexp.MustCompile(`http://\S+/api/verify-email\?\S+`).FindString(capture.nextMail(t))
	d.down.Store(true)
	resp, err := httpClientNoRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "unavailable") {
		t.Fatalf("the link while the store is down: %d %v %s, want 503 unavailable with Retry-After", resp.StatusCode, resp.Header, body)
	}
	d.down.Store(false)
	if resp, err = httpClientNoRedirect.Get(link); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the link once the store is back: %d, want 303", resp.StatusCode)
	}
}

// httpClientNoRedirect shows redirects to the test instead of following them.
var httpClientNoRedirect = http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, _, password string) error {
		select {
		case s.b.passwords <- password:
		default:
		}
		return nil
	}), nil
}

// nextMail waits for the next captured message.
func (b *smtpCapture) nextMail(t *testing.T) string {
	t.Helper()
	select {
	case m := <-b.msgs:
		return m
	case <-time.After(signalingtest.Timeout):
		t.Fatal("no email arrived")
		return ""
	}
}

// TestPasswordAloneKeepsCodeLimit: someone who knows the password but not
// the authenticator guesses codes at /api/login, each from a new address,
// and between guesses proves the password alone at
// /api/resend-verification. That must not clear the account's failures:
// the per-account limit still stops the guessing.
func TestPasswordAloneKeepsCodeLimit(t *testing.T) {
	capture, smtpAddr := startSMTP(t)
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org", Now: now,
		TrustedProxies: []string{"127.0.0.1/32"},
		LoginLimits:    auth.LimiterOptions{SlowAfter: 50, BlockAfter: 3},
	}})
	creds := map[string]string{"username": "erin", "password": password, "email": "erin@example.org"}
	if c, b := s.Post(t, "/api/register", creds); c != 201 {
		t.Fatalf("register: %d %s", c, b)
	}
	link := regexp.MustCompile(`http://\S+/api/verify-email\?\S+`).FindString(capture.nextMail(t))
	resp, err := httpClientNoRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tok := s.Login(t, "erin", password)
	authz := []string{"Authorization", "Bearer " + tok.AccessToken}
	_, body := s.Post(t, "/api/totp/enroll", "", authz...)
	var e struct{ Secret string }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("enroll: %s", body)
	}
	first, _ := totp.GenerateCode(e.Secret, now())
	if c, b := s.Post(t, "/api/totp/confirm", map[string]string{"password": password, "code": first}, authz...); c != 200 {
		t.Fatalf("confirm: %d %s", c, b)
	}
	wrongCode := func() string {
		c, _ := totp.GenerateCode(e.Secret, now())
		n, _ := strconv.Atoi(c)
		return fmt.Sprintf("%06d", (n+500000)%1000000)
	}
	guesses := 0
	for round := range 5 {
		for range 2 {
			c, b := s.Post(t, "/api/login", map[string]string{"username": "erin", "password": password, "code": wrongCode()},
				"X-Forwarded-For", fmt.Sprintf("203.0.113.%d", 10+round))
			if c == http.StatusTooManyRequests {
				if guesses < 3 {
					t.Fatalf("limited after %d wrong codes, want 3 (BlockAfter)", guesses)
				}
				return
			}
			if c != http.StatusUnauthorized {
				t.Fatalf("wrong code: %d %s", c, b)
			}
			guesses++
		}
		c, b := s.Post(t, "/api/resend-verification", map[string]string{"username": "erin", "password": password},
			"X-Forwarded-For", fmt.Sprintf("203.0.113.%d", 100+round))
		if c != http.StatusConflict {
			t.Fatalf("resend-verification on a confirmed account: %d %s, want 409", c, b)
		}
	}
	t.Fatalf("%d wrong codes on one account with BlockAfter 3, never limited: the password alone cleared the account's count", guesses)
}

// TestTwoFactorSignInsDoNotBlockTheAddress: the web app signs in to an
// account with two-factor authentication in two requests, the first
// without a code (answered totp_required), the second with it. The first
// guesses nothing: it must not count as a failed login of the client's
// address, else ten such sign-ins from one address (an office behind one
// NAT, or one person on a few devices) in 15 minutes block that address,
// and then a person with the right password and code gets 429.
func TestTwoFactorSignInsDoNotBlockTheAddress(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	now := func() time.Time { return time.Unix(clock.Load(), 0) }
	// Short slow-down delays keep the test fast; the counts are the defaults.
	limits := auth.LimiterOptions{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{Now: now, LoginLimits: limits}})
	tok := s.User(t, "dana")
	authz := []string{"Authorization", "Bearer " + tok.AccessToken}
	_, body := s.Post(t, "/api/totp/enroll", "", authz...)
	var e struct{ Secret string }
	if err := json.Unmarshal(body, &e); err != nil || e.Secret == "" {
		t.Fatalf("enroll: %s", body)
	}
	first, _ := totp.GenerateCode(e.Secret, now())
	if c, b := s.Post(t, "/api/totp/confirm", map[string]string{"password": password, "code": first}, authz...); c != 200 {
		t.Fatalf("confirm: %d %s", c, b)
	}
	for i := range 15 {
		clock.Add(30) // a fresh code each time; 15 sign-ins in 7.5 minutes
		if c, b := s.Post(t, "/api/login", map[string]string{"username": "dana", "password": password}); c != 401 || !strings.Contains(string(b), "totp_required") {
			t.Fatalf("sign-in %d without a code: %d %s, want 401 totp_required", i, c, b)
		}
		code, _ := totp.GenerateCode(e.Secret, now())
		if c, b := s.Post(t, "/api/login", map[string]string{"username": "dana", "password": password, "code": code}); c != 200 {
			t.Fatalf("sign-in %d with the right password and code: %d %s, want 200", i, c, b)
		}
	}
}
