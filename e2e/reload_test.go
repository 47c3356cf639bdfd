package e2e_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestReloadWhileTheServerIsBusy: a reload whose refresh is answered 429
// (this sign-in refreshed too often) or 503 (the store cannot be reached)
// keeps the refresh token, which still works, and signs in again once the
// server answers; only a refusal (401) signs the tab out.
func TestReloadWhileTheServerIsBusy(t *testing.T) {
	s := signalingtest.Start(t, resumable)
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("lobby")

	// The next two refreshes the tab makes get 429 and 503; later ones
	// reach the server.
	answers := []*fakeAnswer{
		{429, `{"error":{"code":"rate_limited","message":"too many refreshes"}}`},
		{503, `{"error":{"code":"unavailable","message":"the store cannot be reached"}}`},
	}
	var refused atomic.Int32
	intercept(t, alice, "*/api/refresh", func(*fetch.EventRequestPaused) *fakeAnswer {
		if n := int(refused.Load()); n < len(answers) {
			refused.Add(1)
			return answers[n]
		}
		return nil
	})

	alice.do(chromedp.Reload())
	alice.waitFor("signed in again, or signed out", `(khadgaApp.client && khadgaApp.client.connected) || sessionStorage.getItem('khadga.refresh') === null`)
	if got := refused.Load(); got != 2 {
		t.Errorf("%d refreshes refused, want 2", got)
	}
	if eval[bool](alice, `sessionStorage.getItem('khadga.refresh') === null`) {
		t.Fatalf("the tab forgot its sign-in after a busy answer: %s", eval[string](alice, `document.getElementById('signin-error').textContent`))
	}
	alice.waitFor("back in the room", `khadgaApp.client.rooms.has('lobby') && !document.getElementById('app').hidden`)
}

// TestReloadWhileTheSocketCannotOpen: a reload whose refresh works but
// whose WebSocket does not open keeps the sign-in and tries again until
// the socket opens, and is back in its room. The ways in which it does not
// open are real: a ticket request answered 503, and an upgrade the server
// refuses (the ticket is forged here), which the browser reports with no
// status at all, as it does a 503 at the upgrade or a server that is down.
// A sign-in revoked while it tries (signed out elsewhere: its refresh is
// refused, 401) ends it: the tab is signed out.
func TestReloadWhileTheSocketCannotOpen(t *testing.T) {
	s := signalingtest.Start(t, resumable)
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("lobby")

	busy := &fakeAnswer{503, `{"error":{"code":"unavailable","message":"this server holds as many unused tickets as it can"}}`}
	forged := &fakeAnswer{200, `{"ticket":"forged-by-the-test","expires_in":30}`}
	var left, faked atomic.Int32    // ticket requests still to fake; faked so far
	var only atomic.Pointer[string] // if set, fake only the ticket requests with this Authorization
	intercept(t, alice, "*/api/ws-ticket", func(ev *fetch.EventRequestPaused) *fakeAnswer {
		if a := only.Load(); a != nil && ev.Request.Headers["Authorization"] != *a {
			return nil
		}
		if left.Add(-1) < 0 {
			left.Store(0)
			return nil
		}
		if faked.Add(1)%2 == 1 {
			return busy
		}
		return forged
	})
	const signedOut = `sessionStorage.getItem('khadga.refresh') === null`

	left.Store(2)
	alice.do(chromedp.Reload())
	alice.waitFor("connected again, or signed out", `(khadgaApp.client && khadgaApp.client.connected) || `+signedOut)
	if eval[bool](alice, signedOut) {
		t.Fatalf("the tab forgot its sign-in when its socket did not open: %s", eval[string](alice, `document.getElementById('signin-error').textContent`))
	}
	if got := faked.Load(); got != 2 {
		t.Errorf("%d ticket requests answered by the test, want 2", got)
	}
	alice.waitFor("back in the room", `khadgaApp.client.rooms.has('lobby') && !document.getElementById('app').hidden`)
	if !eval[bool](alice, `sessionStorage.getItem('khadga.refresh') === khadgaApp.session.refreshToken`) {
		t.Error("the kept refresh token is not the session's")
	}

	t.Run("a sign-in with the form meanwhile wins", func(t *testing.T) {
		alice.t = t
		left.Store(1 << 30)
		alice.do(chromedp.Reload())
		alice.waitFor("trying again, or signed out", `document.getElementById('signin-error').textContent.includes('Trying again') || `+signedOut)
		restored := eval[string](alice, `khadgaApp.session ? 'Bearer ' + khadgaApp.session.access : ''`)
		oldRT := eval[string](alice, `sessionStorage.getItem('khadga.refresh') || ''`)
		if restored == "" || oldRT == "" {
			t.Fatalf("signed out while trying again: %s", eval[string](alice, `document.getElementById('signin-error').textContent`))
		}
		only.Store(&restored) // the restored sign-in's socket still cannot open; the form's can
		alice.do(chromedp.SetValue(chromedp.ID("username"), "alice"), chromedp.SetValue(chromedp.ID("password"), password))
		alice.press("login")
		alice.waitFor("signed in with the form", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden && 'Bearer ' + khadgaApp.session.access !== `+js(restored))
		// The restored sign-in gives up at its next try, and signs itself out.
		alice.waitFor("the restored sign-in's logout", `performance.getEntriesByType('resource').some(e => e.name.endsWith('/api/logout'))`)
		if code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": oldRT}); code != http.StatusUnauthorized {
			t.Errorf("the restored sign-in's refresh token after the form's sign-in: %d %s, want 401", code, body)
		}
		if !eval[bool](alice, `khadgaApp.client.connected && sessionStorage.getItem('khadga.refresh') === khadgaApp.session.refreshToken`) {
			t.Error("the form's sign-in is not the one connected and kept")
		}
		only.Store(nil)
		left.Store(0)
	})

	t.Run("a refusal signs out", func(t *testing.T) {
		alice.t = t
		left.Store(1 << 30)
		alice.do(chromedp.Reload())
		alice.waitFor("trying again, or signed out", `document.getElementById('signin-error').textContent.includes('Trying again') || `+signedOut)
		rt := eval[string](alice, `sessionStorage.getItem('khadga.refresh') || ''`)
		if rt == "" {
			t.Fatalf("signed out before the sign-in was revoked: %s", eval[string](alice, `document.getElementById('signin-error').textContent`))
		}
		// Signed out elsewhere: the family of the kept token is revoked.
		if code, body := s.Post(t, "/api/logout", map[string]string{"refresh_token": rt}); code != http.StatusNoContent {
			t.Fatalf("logout: %d %s", code, body)
		}
		left.Store(0)
		// The refresh token goes first; the message once the sign-out's
		// logout request is answered.
		alice.waitFor("signed out", signedOut+` && !document.getElementById('signin').hidden
			&& !document.getElementById('signin-error').textContent.includes('Trying again')`)
		if msg := eval[string](alice, `document.getElementById('signin-error').textContent`); !strings.Contains(msg, "expired") {
			t.Errorf("sign-in error %q, want one that says the session expired", msg)
		}
		if eval[bool](alice, `!!khadgaApp.client || !!khadgaApp.session`) {
			t.Error("the page still holds a client or a session")
		}
	})
}

// fakeAnswer is an HTTP answer that intercept gives in the server's place.
type fakeAnswer struct {
	code int64
	body string
}

// intercept hands the page's requests whose URL matches pattern (a
// wildcard pattern of the DevTools Fetch domain) to answer, one at a time
// in order, until the test ends: answer returns the answer to give in the
// server's place (JSON, with Retry-After: 1), or nil to let the request
// reach the server.
func intercept(t *testing.T, p *page, pattern string, answer func(*fetch.EventRequestPaused) *fakeAnswer) {
	t.Helper()
	ctx, cancel := context.WithCancel(p.tab)
	t.Cleanup(cancel)
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: pattern}}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			a := answer(&ev)
			if a == nil {
				chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
				continue
			}
			chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{
				RequestID: ev.RequestID, ResponseCode: a.code, Body: []byte(a.body),
				ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "application/json"}, {Name: "Retry-After", Value: "1"}},
			})
		}
	}()
}

// TestReloadRefreshAnsweredAfterTheForm: the refresh of a reload that is
// answered only after the person signed in with the form (a slow server)
// does not take the tab over. Before, the restored sign-in started all the
// same: it replaced the form's as the page's, and the form's client stayed
// connected behind it, with no way to sign it out; two sign-ins were live.
// Now the restored one is given up at once: signed out (its refresh token
// family revoked), never connected.
func TestReloadRefreshAnsweredAfterTheForm(t *testing.T) {
	s := signalingtest.Start(t, resumable)
	s.Register(t, "bob", password)
	p := openPage(t, s.URL, "alice")
	p.register("alice")
	p.join("lobby")

	// The reload's refresh is held until the form's sign-in is done.
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	var n atomic.Int32
	intercept(t, p, "*/api/refresh", func(*fetch.EventRequestPaused) *fakeAnswer {
		if n.Add(1) == 1 {
			close(held)
			<-release
		}
		return nil
	})
	p.do(chromedp.Reload())
	select {
	case <-held:
	case <-time.After(waitTimeout):
		t.Fatal("the reload made no refresh")
	}
	p.do(chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SetValue(chromedp.ID("username"), "bob"), chromedp.SetValue(chromedp.ID("password"), password))
	p.press("login")
	const bobIn = `khadgaApp.client && khadgaApp.client.connected && khadgaApp.client.self.user === 'bob' && !document.getElementById('app').hidden`
	p.waitFor("bob signed in with the form", bobIn)
	once.Do(func() { close(release) })

	p.waitFor("the restored sign-in given up, or in", `performance.getEntriesByType('resource').some(e => e.name.endsWith('/api/logout')) || `+
		`document.getElementById('whoami').textContent.includes('alice')`)
	if !eval[bool](p, bobIn+` && document.getElementById('whoami').textContent === 'Signed in as bob'`) {
		t.Fatalf("the restored sign-in took the tab over from the form's: %s", p.state())
	}
	if !eval[bool](p, `sessionStorage.getItem('khadga.refresh') === khadgaApp.session.refreshToken`) {
		t.Error("the kept refresh token is not the form's sign-in's")
	}
}
