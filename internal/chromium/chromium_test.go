package chromium_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/internal/chromium"
	"github.com/khadga/khadga/internal/netlab"
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

// TestStaysInLab: a browser in a lab namespace, with proxy variables in
// its environment, reaches a page at an IP address and sends nothing
// anywhere else: no request to the proxy, and no DNS query to the host's
// resolver (the lab's guard fails the test on any packet to an address
// outside its ranges), not even after a navigation to a name fails.
func TestStaysInLab(t *testing.T) {
	lab := netlab.New(t, "cr")
	host, gw := lab.Netns(t, "h"), lab.Netns(t, "g")
	lab.Link(t, host, "eth0", "198.51.100.2/24", gw, "eth0", "198.51.100.1/24")
	host.IP(t, "route", "add", "default", "via", "198.51.100.1")

	// serve serves h on l, a listener in a lab namespace, until the test
	// ends.
	serve := func(l net.Listener, h http.HandlerFunc) {
		srv := httptest.NewUnstartedServer(h)
		srv.Listener.Close()
		srv.Listener = l
		srv.Start()
		t.Cleanup(srv.Close)
	}
	var proxied atomic.Int32
	proxy, err := gw.Listen("tcp", "198.51.100.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(proxy, func(w http.ResponseWriter, r *http.Request) { proxied.Add(1) })
	for _, v := range []string{"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY"} {
		t.Setenv(v, "http://"+proxy.Addr().String())
	}
	page, err := host.Listen("tcp", "198.51.100.2:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(page, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<!doctype html><title>in the lab</title>"))
	})

	b, err := chromium.Start(chromium.Options{
		Netns:      host.SystemName(),
		ExtraFlags: map[string]any{"host-resolver-rules": chromium.HostResolverRules("198.51.100.2")},
	})
	if err != nil {
		if chromium.Required() {
			t.Fatalf("Chromium: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	defer b.Close()
	tab := b.NewTab(t)
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+page.Addr().String()+"/")); err != nil {
		t.Fatalf("page at %s: %v", page.Addr(), err)
	}
	if title, err := chromedp.Run(ctx, chromedp.Title()); err != nil || title != "in the lab" {
		t.Fatalf("page at %s: title %q, %v", page.Addr(), title, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://khadga.test/")); err == nil {
		t.Errorf("a page by name loaded, want a name that does not resolve")
	}
	// Not a synchronisation: the time in which Chromium's background
	// lookups, which come within a second or two of its start, and the
	// probes after a failed navigation would reach the guard.
	time.Sleep(3 * time.Second)
	if n := proxied.Load(); n != 0 {
		t.Errorf("the proxy got %d requests", n)
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
