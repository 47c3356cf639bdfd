package e2e_test

import (
	"context"
	"sync/atomic"
	"testing"

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
	ctx, cancel := context.WithCancel(alice.tab)
	defer cancel()
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/api/refresh"}}}); err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int32
	go func() {
		answers := []struct {
			code int64
			body string
		}{
			{429, `{"error":{"code":"rate_limited","message":"too many refreshes"}}`},
			{503, `{"error":{"code":"unavailable","message":"the store cannot be reached"}}`},
		}
		for ev, err := range paused {
			if err != nil {
				return
			}
			if n := int(refused.Load()); n < len(answers) {
				refused.Add(1)
				chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{
					RequestID: ev.RequestID, ResponseCode: answers[n].code, Body: []byte(answers[n].body),
					ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "application/json"}, {Name: "Retry-After", Value: "1"}},
				})
				continue
			}
			chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()

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
