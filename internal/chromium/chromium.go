// Package chromium starts one shared headless Chromium for a test binary and
// gives each test fresh, isolated tabs, driven with chromedp.
//
// A test binary starts the browser once, in TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(chromium.Main(m)) }
//
// and each test asks for the browser, then for as many tabs as it has users.
// Every tab lives in its own browser context (like an incognito window: no
// shared cookies or storage), and closes when the test ends:
//
//	b := chromium.Shared(t) // skips, or fails under KHADGA_REQUIRE_CHROMIUM=1, when Chromium is missing
//	alice := b.NewTab(t)
//	chromedp.Do(alice, chromedp.Navigate(url))
//
// Chromium runs headless with a fake camera and microphone, media permission
// granted, autoplay allowed and loopback ICE candidates enabled, so WebRTC
// between two tabs (or a tab and a Go peer) works on 127.0.0.1. Its profile
// and temporary files live in one short temporary directory that is removed
// when the browser stops.
//
// The browser reaches only the addresses the tests give it: it uses no
// proxy (whatever the environment says), and it resolves no name, so it
// sends no DNS query to the host's resolver (see HostResolverRules).
package chromium

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ErrNotFound: no Chromium binary was found.
var ErrNotFound = errors.New("chromium: no Chromium binary found (install Debian's chromium package, or set KHADGA_CHROMIUM)")

// StartTimeout bounds the browser's start, and TabTimeout the opening of a tab.
const (
	StartTimeout = 120 * time.Second
	TabTimeout   = 60 * time.Second
)

// Flags are the command-line switches the browser gets, besides chromedp's
// defaults (headless, no first run, no background networking, ...). They
// were verified on a Debian container running as root.
var Flags = map[string]any{
	"no-sandbox":                          true, // root in a container has no user namespaces
	"disable-gpu":                         true,
	"use-fake-device-for-media-stream":    true, // a synthetic camera and microphone
	"use-fake-ui-for-media-stream":        true, // grant getUserMedia without a prompt
	"autoplay-policy":                     "no-user-gesture-required",
	"allow-loopback-in-peer-connection":   true, // ICE candidates on 127.0.0.1
	"disable-quic":                        true,
	"no-first-run":                        true,
	"disable-background-networking":       true,
	"disable-component-update":            true,
	"disable-sync":                        true,
	"disable-features":                    "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints",
	"disable-renderer-backgrounding":      true,
	"disable-background-timer-throttling": true,
	"mute-audio":                          true,
	"window-size":                         "1280,860",
	// No proxy: Chromium follows http_proxy, https_proxy and all_proxy
	// from the environment (Start also leaves them out of it).
	"no-proxy-server": true,
	// Even headless and with background networking off, Chromium 156
	// looks up clients2.google.com, update.googleapis.com and
	// accounts.google.com through the host's resolv.conf, also inside a
	// lab namespace.
	"host-resolver-rules": HostResolverRules("localhost", "127.0.0.1"),
}

// HostResolverRules is a value for the host-resolver-rules flag under
// which every host name fails at once, with no DNS query, except the
// hosts listed. Chromium applies the rules to IP literals too, so a test
// that browses to an address other than 127.0.0.1 must list it (through
// Options.ExtraFlags).
func HostResolverRules(hosts ...string) string {
	rules := "MAP * ~NOTFOUND"
	for _, h := range hosts {
		rules += ", EXCLUDE " + h
	}
	return rules
}

// preferences is the profile's Preferences file. A navigation that fails
// to resolve a name has Chromium probe the network with DNS queries to
// 8.8.8.8 and 8.8.4.4, and with a lookup of google.com through the
// system's resolver, unless "alternate error pages" are off.
const preferences = `{"alternate_error_pages": {"enabled": false}}`

// Path finds the Chromium binary: $KHADGA_CHROMIUM, then the usual names on
// $PATH.
func Path() (string, error) {
	if p := os.Getenv("KHADGA_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("chromium: KHADGA_CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNotFound
}

// Options adjust Start.
type Options struct {
	// Path is the binary; empty means Path().
	Path string
	// Output receives the browser's stderr; nil discards it.
	Output io.Writer
	// Logf receives chromedp's errors; nil discards them.
	Logf func(string, ...any)
	// Netns runs the browser in this network namespace (a name that
	// `ip netns` knows), through `ip netns exec`, so that its WebRTC
	// meets the namespace's routers and NATs. chromedp drives it over a
	// pipe, which the namespace does not affect. Empty: the test's own.
	Netns string
	// ExtraFlags are more command-line switches, over Flags.
	ExtraFlags map[string]any
}

// Browser is one running Chromium process.
type Browser struct {
	dir         string
	allocCancel context.CancelFunc
	ctx         context.Context // the browser's first tab, which owns the process
	cancel      context.CancelFunc
	closeOnce   sync.Once
}

// Start launches Chromium and waits until it answers.
func Start(opts Options) (*Browser, error) {
	path := opts.Path
	if path == "" {
		var err error
		if path, err = Path(); err != nil {
			return nil, err
		}
	}
	// A short directory: Chromium puts unix sockets under TMPDIR, and their
	// paths must stay under 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "kc")
	if err != nil {
		return nil, fmt.Errorf("chromium: temp dir: %w", err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("chromium: temp dir: %w", err)
	}
	profile := filepath.Join(dir, "profile")
	if err := os.MkdirAll(filepath.Join(profile, "Default"), 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("chromium: profile: %w", err)
	}
	if err := os.WriteFile(filepath.Join(profile, "Default", "Preferences"), []byte(preferences), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("chromium: profile: %w", err)
	}
	out := opts.Output
	if out == nil {
		out = io.Discard
	}
	allocOpts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		chromedp.NoInheritEnv,
		chromedp.Env(append(env(os.Environ()), "TMPDIR="+tmp)...),
		chromedp.CombinedOutput(out),
	)
	for k, v := range Flags {
		allocOpts = append(allocOpts, chromedp.Flag(k, v))
	}
	for k, v := range opts.ExtraFlags {
		allocOpts = append(allocOpts, chromedp.Flag(k, v))
	}
	if opts.Netns != "" {
		allocOpts = append(allocOpts, chromedp.ModifyCmdFunc(inNetns(opts.Netns)))
	}
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), allocOpts...)
	var ctxOpts []chromedp.ContextOption
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ctxOpts = append(ctxOpts, chromedp.WithErrorf(logf), chromedp.WithLogf(func(string, ...any) {}))
	ctx, cancel := chromedp.NewContext(allocCtx, ctxOpts...)
	b := &Browser{dir: dir, allocCancel: allocCancel, ctx: ctx, cancel: cancel}
	// The first Run starts the process; it must not carry a timeout (that
	// would end the browser with it), so the timeout runs beside it.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err = <-started:
	case <-time.After(StartTimeout):
		err = fmt.Errorf("no answer after %v", StartTimeout)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("chromium: start %s: %w", path, err)
	}
	return b, nil
}

// env is environ without the variables that set a proxy, which Chromium
// would follow.
func env(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		switch n := strings.ToLower(name); {
		case strings.HasSuffix(n, "_proxy"), n == "socks_server", n == "socks_version", n == "tmpdir":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Close stops the browser and removes its directory.
func (b *Browser) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.cancel()
		b.allocCancel() // waits for the process to exit
		err = os.RemoveAll(b.dir)
	})
	return err
}

// Context is the browser's first tab. Contexts made from it open new tabs in
// the default browser context.
func (b *Browser) Context() context.Context { return b.ctx }

// NewTab opens a tab in a new browser context (isolated like an incognito
// window) and closes both when the test ends. Wrap each wait in a timeout
// derived from the returned context.
func (b *Browser) NewTab(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first Do creates the browser context and the target. A timeout on
	// its context would close the tab when it fires later, so the timeout
	// runs beside it instead.
	created := make(chan error, 1)
	go func() { created <- chromedp.Do(ctx) }()
	select {
	case err := <-created:
		if err != nil {
			t.Fatalf("chromium: new tab: %v", err)
		}
	case <-time.After(TabTimeout):
		cancel()
		t.Fatalf("chromium: new tab: no answer after %v", TabTimeout)
	}
	return ctx
}

// LogConsole copies the tab's console messages and uncaught exceptions to
// t.Log until the test ends, so that a failing browser test shows what the
// page said.
func LogConsole(t testing.TB, tab context.Context, name string) {
	ctx, cancel := context.WithCancel(tab)
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock(); cancel() })
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(format, args...)
		}
	}
	console := chromedp.Events(ctx, runtime.ConsoleAPICalled)
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	go func() {
		for ev, err := range console {
			if err != nil {
				return
			}
			var b strings.Builder
			for _, a := range ev.Args {
				if len(a.Value) > 0 {
					b.Write(a.Value)
				} else {
					b.WriteString(a.Description)
				}
				b.WriteByte(' ')
			}
			logf("%s console.%s: %s", name, ev.Type, b.String())
		}
	}()
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			logf("%s exception: %s (%s:%d)", name, msg, d.URL, d.LineNumber)
		}
	}()
}
