package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/khadga/khadga/internal/chromium"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

func TestMain(m *testing.M) {
	// The browser trusts the certificate of servers started with
	// signalingtest.Options.TLS, and that one alone.
	chromium.Flags["ignore-certificate-errors-spki-list"] = signalingtest.TLSCertSPKI()
	code := chromium.Main(m)
	if peerBin.dir != "" {
		os.RemoveAll(peerBin.dir)
	}
	os.Exit(code)
}

// waitTimeout bounds every wait on a page. It is generous: CI machines are
// slow and shared, and a passing test never waits for it.
const waitTimeout = 45 * time.Second

const password = "correct horse battery"

// resumable is a server whose sessions wait 30 s for a resume: signalingtest's
// default (2 s) is shorter than a reconnect can take on a loaded CI machine.
var resumable = signalingtest.Options{Config: signaling.Config{ResumeWindow: 30 * time.Second}}

// page is one simulated person: a tab, in its own browser context, with the
// app open.
type page struct {
	t    *testing.T
	name string
	tab  context.Context
	ws   *frameLog
	// urls records every URL the page requested, WebSockets included.
	urls *frameLog
	// others are the other pages of the test, whose state a failure shows too.
	others []*page
}

// frameLog records the payload of every WebSocket frame a page sends or
// receives, to prove what did not go through the server.
type frameLog struct {
	mu     sync.Mutex
	frames []string
}

func (f *frameLog) add(s string) {
	f.mu.Lock()
	f.frames = append(f.frames, s)
	f.mu.Unlock()
}

// containing returns the frames that contain s.
func (f *frameLog) containing(s string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, fr := range f.frames {
		if strings.Contains(fr, s) {
			out = append(out, fr)
		}
	}
	return out
}

func (f *frameLog) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.frames)
}

// openPage opens a fresh tab on url, logging its console to t and
// recording its WebSocket frames.
func openPage(t *testing.T, url, name string) *page {
	t.Helper()
	b := chromium.Shared(t)
	p := &page{t: t, name: name, tab: b.NewTab(t), ws: &frameLog{}, urls: &frameLog{}}
	chromium.LogConsole(t, p.tab, name)
	p.recordFrames()
	p.watchCSP()
	p.do(chromedp.Navigate(url))
	if os.Getenv("KHADGA_DEBUG") != "" {
		p.do(chromedp.Evaluate[chromedp.Void](`globalThis.khadgaDebug = true`))
	}
	return p
}

// watchCSP records every Content-Security-Policy violation of the page
// (the server's policy forbids inline script and style), and fails the test
// at its end if there was one.
func (p *page) watchCSP() {
	ctx, cancel := context.WithTimeout(p.tab, waitTimeout)
	defer cancel()
	_, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: `
		window.__csp = [];
		document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`})
	if err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	p.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(p.tab, 5*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__csp || []`))
		if err == nil && len(v) > 0 {
			p.t.Errorf("%s: Content-Security-Policy violations: %v", p.name, v)
		}
	})
}

func (p *page) recordFrames() {
	ctx, cancel := context.WithCancel(p.tab)
	p.t.Cleanup(cancel)
	sent := chromedp.Events(ctx, network.WebSocketFrameSent)
	recv := chromedp.Events(ctx, network.WebSocketFrameReceived)
	reqs := chromedp.Events(ctx, network.RequestWillBeSent)
	sockets := chromedp.Events(ctx, network.WebSocketCreated)
	go func() {
		for ev, err := range reqs {
			if err != nil {
				return
			}
			p.urls.add(ev.Request.URL)
		}
	}()
	go func() {
		for ev, err := range sockets {
			if err != nil {
				return
			}
			p.urls.add(ev.URL)
		}
	}()
	go func() {
		for ev, err := range sent {
			if err != nil {
				return
			}
			p.ws.add(string(ev.Response.PayloadData))
		}
	}()
	go func() {
		for ev, err := range recv {
			if err != nil {
				return
			}
			p.ws.add(string(ev.Response.PayloadData))
		}
	}()
}

// do runs actions with a timeout.
func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.tab, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

// eval evaluates js (awaiting a promise) and decodes its value into T.
func eval[T any](p *page, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.tab, waitTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v", p.name, short(js), err)
	}
	return v
}

// waitFor polls the JavaScript expression until it is truthy, failing the
// test with what after waitTimeout.
func (p *page) waitFor(what, js string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.tab, waitTimeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		p.t.Errorf("%s: waiting for %s: %v\npage state: %s", p.name, what, err, p.state())
		for _, o := range p.others {
			p.t.Errorf("%s state: %s", o.name, o.state())
		}
		p.t.FailNow()
	}
}

// state describes the page's SDK and peer connections, for failure messages.
func (p *page) state() string {
	ctx, cancel := context.WithTimeout(p.tab, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const k = window.khadgaApp && khadgaApp.client;
		if (!k) return 'no client; sign-in error: ' + document.getElementById('signin-error').textContent;
		return JSON.stringify({roomsError: document.getElementById('rooms-error').textContent, roomInput: document.getElementById('room-name').value, log: [...document.querySelectorAll('#chat-log li')].map(e => e.textContent).slice(-8), self: k.self, connected: k.connected, rooms: [...k.rooms], peers: [...k.peers.values()].map(p => ({
			user: p.member.user, polite: p.polite, signaling: p.pc.signalingState, ice: p.pc.iceConnectionState,
			gathering: p.pc.iceGatheringState, conn: p.pc.connectionState, chat: p.chat.readyState,
			send: p.pc.getSenders().filter(s => s.track).map(s => s.track.kind),
			recv: p.pc.getTransceivers().map(t => t.mid + ':' + t.receiver.track.kind + ':' + t.currentDirection + (t.receiver.track.muted ? ':muted' : ''))})),
			windows: [...document.querySelectorAll('.vwin video')].map(v => v.videoWidth + 'x' + v.videoHeight + (v.paused ? ' paused' : '')),
			transfers: (khadgaApp.transfers || []).map(t => [t.direction, t.name, t.state, t.done, t.error].join(':'))});
	})()`))
	if err != nil {
		return err.Error()
	}
	return s
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// register signs up and in through the form, and waits for the app.
func (p *page) register(user string) {
	p.t.Helper()
	p.do(
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), password),
	)
	p.press("register")
	p.do(chromedp.WaitVisible(chromedp.ID("app")))
	p.waitFor("the welcome", `khadgaApp.client && khadgaApp.client.connected`)
}

// press activates a button or checkbox from the keyboard (focus, then
// space), as a keyboard user would; it also avoids clicking at coordinates
// that a layout change has just moved.
func (p *page) press(id string) {
	p.t.Helper()
	p.do(chromedp.Focus(chromedp.ID(id)), chromedp.KeyEvent(" "))
}

// join joins a room through the form.
func (p *page) join(room string) {
	p.t.Helper()
	p.do(chromedp.SendKeys(chromedp.ID("room-name"), room+kb.Enter))
	p.waitFor("room "+room+" on the page", fmt.Sprintf(`document.querySelector('#rooms section[data-room=%s]')`, js(room)))
}

// say sends a chat message through the form.
func (p *page) say(text string) {
	p.t.Helper()
	p.do(chromedp.SendKeys(chromedp.ID("chat-input"), text+kb.Enter))
}

// waitMessage waits until a message with text from user arrived over a data channel.
func (p *page) waitMessage(from, text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("message %q from %s", text, from), fmt.Sprintf(
		`[...document.querySelectorAll('#chat-log li.msg[data-from=%s][data-transport="datachannel"] .text')].some(e => e.textContent === %s)`,
		js(from), js(text)))
}

// waitConnected waits until the page's chat channel to user is open.
func (p *page) waitConnected(user string) {
	p.t.Helper()
	p.waitFor("a connection to "+user, fmt.Sprintf(
		`[...khadgaApp.client.peers.values()].some(p => p.member.user === %s && p.chat.readyState === 'open')`, js(user)))
}

// peerExpr is a JavaScript expression for the page's Peer object of user.
func peerExpr(user string) string {
	return fmt.Sprintf(`[...khadgaApp.client.peers.values()].find(p => p.member.user === %s)`, js(user))
}

// twoInRoom starts a server and two pages whose users registered, joined
// room and connected to each other.
func twoInRoom(t *testing.T, opts signalingtest.Options, room string) (*signalingtest.Server, *page, *page) {
	t.Helper()
	s := signalingtest.Start(t, opts)
	alice, bob := openPage(t, s.URL, "alice"), openPage(t, s.URL, "bob")
	alice.others, bob.others = []*page{bob}, []*page{alice}
	alice.register("alice")
	bob.register("bob")
	alice.join(room)
	bob.join(room)
	alice.waitConnected("bob")
	bob.waitConnected("alice")
	return s, alice, bob
}

// artifactDir is where screenshots go: $KHADGA_ARTIFACTS, or the test's
// temporary directory.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("KHADGA_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("artifacts: %v", err)
		}
		return d
	}
	return t.TempDir()
}

func saveArtifact(t *testing.T, name string, data []byte) string {
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("save %s: %v", name, err)
	}
	t.Logf("saved %s (%d bytes)", path, len(data))
	return path
}

func contextWithTimeout(p *page) (context.Context, context.CancelFunc) {
	return context.WithTimeout(p.tab, waitTimeout)
}

// evalVoid evaluates a script for its effect.
func evalVoid(script string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](script)
}
