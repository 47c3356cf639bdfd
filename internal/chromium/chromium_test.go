package chromium_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/internal/chromium"
)

func TestMain(m *testing.M) { os.Exit(chromium.Main(m)) }

// TestTabsAreIsolated checks that two tabs of the shared browser live in
// separate browser contexts (storage set in one is absent in the other) and
// that the fake camera answers getUserMedia without a prompt.
func TestTabsAreIsolated(t *testing.T) {
	b := chromium.Shared(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<!doctype html><title>t</title>"))
	}))
	defer srv.Close()
	a, c := b.NewTab(t), b.NewTab(t)
	wait := func(ctx context.Context) context.Context {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	for _, tab := range []context.Context{a, c} {
		if err := chromedp.Do(wait(tab), chromedp.Navigate(srv.URL)); err != nil {
			t.Fatalf("navigate: %v", err)
		}
	}
	if err := chromedp.Do(wait(a), chromedp.Evaluate[chromedp.Void](`localStorage.setItem("k", "a")`)); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(wait(c), chromedp.Evaluate[*string](`localStorage.getItem("k")`))
	if err != nil {
		t.Fatal(err)
	}
	if got != nil {
		t.Fatalf("second tab sees the first tab's storage: %q", *got)
	}
	tracks, err := chromedp.Run(wait(a), chromedp.Evaluate[int](
		`navigator.mediaDevices.getUserMedia({video: true, audio: true}).then(s => s.getTracks().length)`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("getUserMedia: %v", err)
	}
	if tracks != 2 {
		t.Fatalf("fake media gave %d tracks, want 2", tracks)
	}
}
