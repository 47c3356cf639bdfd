package e2e_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestPasswordChange: a signed-in person changes the password in the app.
// A wrong current password and a mistyped repeat are refused on the page;
// the right one changes it while the session goes on (its tokens still
// refresh); afterwards the old password is refused and the new one signs in.
func TestPasswordChange(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	const newPassword = "a brand new passphrase"
	change := func(current, next, again string) string {
		alice.do(
			evalVoid(`for (const id of ['current-password', 'new-password', 'new-password-again']) document.getElementById(id).value = ''; document.getElementById('password-message').textContent = ''`),
			chromedp.SendKeys(chromedp.ID("current-password"), current),
			chromedp.SendKeys(chromedp.ID("new-password"), next),
			chromedp.SendKeys(chromedp.ID("new-password-again"), again+kb.Enter))
		alice.waitFor("an answer", `document.getElementById('password-message').textContent !== ''`)
		return eval[string](alice, `document.getElementById('password-message').textContent`)
	}
	alice.press("password-title") // opens the <details>
	if got := change("not my password", newPassword, newPassword); !strings.Contains(got, "current password is wrong") {
		t.Fatalf("wrong current password: %q", got)
	}
	if got := change(password, newPassword, newPassword+"x"); !strings.Contains(got, "differ") {
		t.Fatalf("mistyped repeat: %q", got)
	}
	if got := change(password, newPassword, newPassword); !strings.Contains(got, "Password changed") {
		t.Fatalf("change: %q", got)
	}
	if !eval[bool](alice, `khadgaApp.session.refresh().then(() => khadgaApp.client.connected)`) {
		t.Fatal("the session did not go on after the change")
	}
	alice.press("signout")
	signIn := func(pw string) {
		alice.do(chromedp.WaitVisible(chromedp.ID("signin")), evalVoid(`document.getElementById('username').value = 'alice'; document.getElementById('password').value = ''`),
			chromedp.SendKeys(chromedp.ID("password"), pw+kb.Enter))
	}
	signIn(password)
	alice.waitFor("the refusal of the old password", `document.getElementById('signin-error').textContent.includes('Invalid username or password')`)
	signIn(newPassword)
	alice.waitFor("signed in with the new password", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden`)
}

// TestDeleteAccountInBrowser: a user deletes their account from the
// settings: without ticking the box, or with a wrong password, nothing
// happens; with both, the page signs out saying so, and the account no
// longer signs in.
func TestDeleteAccountInBrowser(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	tess := openPage(t, s.URL, "tess")
	tess.register("tess")
	tess.press("delete-title") // opens the <details>
	attempt := func(pw string, tick bool) string {
		tess.do(evalVoid(`document.getElementById('delete-message').textContent = ''; document.getElementById('delete-password').value = ''`),
			evalVoid(fmt.Sprintf(`document.getElementById('delete-confirm').checked = %t`, tick)),
			chromedp.SendKeys(chromedp.ID("delete-password"), pw+kb.Enter))
		tess.waitFor("an answer", `document.getElementById('delete-message').textContent !== '' || !document.getElementById('signin').hidden`)
		return eval[string](tess, `document.getElementById('delete-message').textContent`)
	}
	if got := attempt(password, false); !strings.Contains(got, "Tick the box") {
		t.Fatalf("without the box: %q", got)
	}
	if got := attempt("not my password", true); !strings.Contains(got, "password is wrong") {
		t.Fatalf("a wrong password: %q", got)
	}
	attempt(password, true)
	tess.waitFor("signed out, saying why", `!document.getElementById('signin').hidden && document.getElementById('signin-error').textContent.includes('deleted')`)
	if c, _ := s.Post(t, "/api/login", map[string]string{"username": "tess", "password": password}); c != 401 {
		t.Fatalf("login to the deleted account: %d, want 401", c)
	}
}

// mailbox is an in-process SMTP server keeping the messages it gets.
type mailbox struct{ msgs chan string }

func (m *mailbox) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return mailSession{m}, nil }

type mailSession struct{ m *mailbox }

func (mailSession) Reset()                                 {}
func (mailSession) Logout() error                          { return nil }
func (mailSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (mailSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (s mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.m.msgs <- string(b)
	return err
}

func startMailbox(t *testing.T) (*mailbox, string) {
	m := &mailbox{msgs: make(chan string, 4)}
	srv := gosmtp.NewServer(m)
	srv.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return m, ln.Addr().String()
}

func (m *mailbox) next(t *testing.T) string {
	t.Helper()
	select {
	case msg := <-m.msgs:
		return msg
	case <-time.After(waitTimeout):
		t.Fatal("no email arrived")
		return ""
	}
}

// TestResendVerification: someone registers with a mistyped address and
// lets the link expire. Signing in then says to confirm the address and
// offers to send the link again; with the address corrected in the form,
// the new link goes there, opening it confirms the account, and signing
// in works.
func TestResendVerification(t *testing.T) {
	box, smtpAddr := startMailbox(t)
	var mu sync.Mutex
	offset := time.Duration(0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org", Now: now,
	}})
	erin := openPage(t, s.URL, "erin")
	erin.do(chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "erin"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.SendKeys(chromedp.ID("email"), "erin@exmaple.org"))
	erin.press("register")
	erin.waitFor("the offer to send the link again", `!document.getElementById('resend-row').hidden`)
	box.next(t) // the first link, which expires unopened
	mu.Lock()
	offset = signaling.EmailLinkTTL + time.Hour
	mu.Unlock()

	erin.do(evalVoid(`document.getElementById('email').value = ''`), chromedp.SendKeys(chromedp.ID("email"), "erin@example.org"))
	erin.press("resend")
	erin.waitFor("the notice", `document.getElementById('signin-notice').textContent.includes('erin@example.org')`)
	msg := box.next(t)
	if !strings.Contains(msg, "To: erin@example.org\r\n") {
		t.Fatalf("the new link went elsewhere:\n%s", msg)
	}
	link := regexp.MustCompile(`http://\S+/api/verify-email\?\S+`).FindString(msg)
	erin.do(chromedp.Navigate(link))
	erin.waitFor("the confirmation", `document.getElementById('signin-notice').textContent.includes('confirmed')`)
	erin.do(chromedp.SendKeys(chromedp.ID("username"), "erin"), chromedp.SendKeys(chromedp.ID("password"), password+kb.Enter))
	erin.waitFor("signed in", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden`)
}

// TestPasswordResetInBrowser: someone who forgot their password asks for
// a link from the sign-in form, opens it, chooses a new password there
// (the link's token leaves the address bar), and signs in with it.
func TestPasswordResetInBrowser(t *testing.T) {
	box, smtpAddr := startMailbox(t)
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		SMTPURL: "smtp://" + smtpAddr, SMTPFrom: "khadga@example.org",
	}})
	if c, b := s.Post(t, "/api/register", map[string]string{"username": "lena", "password": password, "email": "lena@example.org"}); c != 201 {
		t.Fatalf("register: %d %s", c, b)
	}
	verify := regexp.MustCompile(`http://\S+/api/verify-email\?\S+`).FindString(box.next(t))
	if resp, err := http.Get(verify); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("verify: %v %v", resp, err)
	}

	lena := openPage(t, s.URL, "lena")
	lena.do(chromedp.WaitVisible(chromedp.ID("username")), chromedp.SendKeys(chromedp.ID("username"), "lena"))
	lena.press("forgot")
	lena.waitFor("the notice", `document.getElementById('signin-notice').textContent.includes('on its way')`)
	msg := box.next(t)
	link := regexp.MustCompile(`http://\S+/#\S+`).FindString(msg)
	if !strings.Contains(msg, "To: lena@example.org\r\n") || !strings.Contains(link, "reset=lena") {
		t.Fatalf("the reset email:\n%s", msg)
	}
	lena.do(chromedp.Navigate(link))
	lena.waitFor("the new-password form", `!document.getElementById('reset').hidden && location.hash === ''`)
	if got := eval[string](lena, `document.getElementById('reset-for').textContent`); !strings.Contains(got, "lena") {
		t.Errorf("the form does not name the account: %q", got)
	}
	lena.do(chromedp.SendKeys(chromedp.ID("reset-password"), "a brand new password"+kb.Enter))
	lena.waitFor("the password changed", `document.getElementById('signin-notice').textContent.includes('is changed') && document.getElementById('reset').hidden`)
	lena.do(evalVoid(`document.getElementById('username').value = ''`), chromedp.SendKeys(chromedp.ID("username"), "lena"),
		chromedp.SendKeys(chromedp.ID("password"), "a brand new password"+kb.Enter))
	lena.waitFor("signed in", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden`)
}
