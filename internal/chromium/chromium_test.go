package chromium_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// A browser that does not start skips the browser tests, except with
// KHADGA_REQUIRE_CHROMIUM=1, where it fails them; CI=true alone, which CI
// systems set for every job, still skips. The test binary runs itself with
// KHADGA_CHROMIUM naming no file.
func TestMissingBrowserSkipsUnlessRequired(t *testing.T) {
	if os.Getenv("CHROMIUM_MISSING") == "1" {
		chromium.Shared(t)
		t.Fatal("Shared returned without a browser")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(env ...string) (string, error) {
		cmd := exec.Command(self, "-test.run=^TestMissingBrowserSkipsUnlessRequired$", "-test.v")
		cmd.Env = append([]string{"CHROMIUM_MISSING=1", "KHADGA_CHROMIUM=" + filepath.Join(t.TempDir(), "none"), "PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, env := range [][]string{nil, {"CI=true"}, {chromium.RequireEnv + "=0"}} {
		out, err := run(env...)
		if err != nil || !strings.Contains(out, "SKIP") || !strings.Contains(out, "KHADGA_CHROMIUM=") {
			t.Errorf("environment %q: %v, want a skip naming KHADGA_CHROMIUM:\n%s", env, err, out)
		}
	}
	out, err := run(chromium.RequireEnv + "=1")
	if err == nil || !strings.Contains(out, "browser tests are required") {
		t.Errorf("%s=1: %v, want a failure:\n%s", chromium.RequireEnv, err, out)
	}
}
