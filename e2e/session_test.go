package e2e_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestSessionLifecycle: the access token is refreshed without a reload
// (and the next connection is authorised with the new one), a reload signs
// in again from sessionStorage, no token ever appears in a URL the page
// requests, the layout fits a phone-width screen, and signing out revokes
// the refresh token.
func TestSessionLifecycle(t *testing.T) {
	s := signalingtest.Start(t, resumable)
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	tokens := []string{
		eval[string](alice, `khadgaApp.session.access`),
		eval[string](alice, `khadgaApp.session.refreshToken`),
	}
	if stored := eval[string](alice, `sessionStorage.getItem('khadga.refresh')`); stored != tokens[1] {
		t.Fatalf("sessionStorage holds %q, want the refresh token", stored)
	}

	alice.do(evalVoid(`khadgaApp.session.refresh()`))
	alice.waitFor("rotated tokens", `khadgaApp.session.refreshToken !== `+js(tokens[1])+` && sessionStorage.getItem('khadga.refresh') === khadgaApp.session.refreshToken`)
	tokens = append(tokens, eval[string](alice, `khadgaApp.session.access`), eval[string](alice, `khadgaApp.session.refreshToken`))
	if tokens[2] == tokens[0] {
		t.Fatal("the access token did not change on refresh")
	}
	// The next connection is authorised with a ticket minted from the new token.
	alice.do(evalVoid(`window.welcomes = []; khadgaApp.client.on('welcome', w => welcomes.push(w)); khadgaApp.client.dropSocket()`))
	alice.waitFor("a resumed connection", `welcomes.length > 0 && welcomes[0].resumed && khadgaApp.client.connected`)

	alice.do(chromedp.Reload())
	alice.waitFor("signed in again after the reload", `khadgaApp.client && khadgaApp.client.connected && !document.getElementById('app').hidden`)
	tokens = append(tokens, eval[string](alice, `khadgaApp.session.access`), eval[string](alice, `khadgaApp.session.refreshToken`))
	if got := eval[string](alice, `document.getElementById('whoami').textContent`); got != "Signed in as alice" {
		t.Errorf("whoami %q", got)
	}

	// Every control has an accessible name: a label, an aria-label or text.
	if unnamed := eval[[]string](alice, `[...document.querySelectorAll('input, select, button, textarea')]
		.filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
		.map(e => e.id || e.outerHTML.slice(0, 60))`); len(unnamed) > 0 {
		t.Errorf("controls without an accessible name: %v", unnamed)
	}

	// Phone width: one column, nothing wider than the screen.
	alice.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	alice.join("pocket")
	// Not innerWidth: a phone widens the layout viewport to fit a page
	// that is too wide, and the check would never fail.
	if w := eval[int](alice, `document.documentElement.scrollWidth - 390`); w > 0 {
		t.Errorf("page is %dpx wider than a 390px screen", w)
	}
	if !eval[bool](alice, `(() => { const r = document.getElementById('chat-input').getBoundingClientRect(); return r.width > 100 && r.right <= 390; })()`) {
		t.Error("chat input does not fit a phone-width screen")
	}

	alice.press("signout")
	alice.waitFor("the sign-in form", `!document.getElementById('signin').hidden && sessionStorage.getItem('khadga.refresh') === null`)
	if code, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": tokens[len(tokens)-1]}); code != http.StatusUnauthorized {
		t.Errorf("refresh token still valid after sign out: %d", code)
	}

	if code, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": tokens[1]}); code != http.StatusUnauthorized {
		t.Errorf("a rotated refresh token still works: %d", code)
	}

	var sockets []string
	for _, u := range alice.urls.containing("/ws") {
		if strings.HasPrefix(u, "ws") {
			sockets = append(sockets, u)
		}
	}
	if len(sockets) < 2 {
		t.Fatalf("recorded %d WebSocket URLs, want at least 2", len(sockets))
	}
	// Tickets and resume tokens go in Sec-WebSocket-Protocol: a URL is
	// what proxies log.
	for _, u := range sockets {
		if strings.Contains(u, "ticket") || strings.Contains(u, "resume") {
			t.Errorf("WebSocket URL with a credential: %s", u)
		}
	}
	for i, tok := range tokens {
		if got := alice.urls.containing(tok); len(got) > 0 {
			t.Errorf("token %d appears in a URL: %s", i, got[0])
		}
	}
}
