package e2e_test

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// siteScript is the script of a site on another origin than the server's:
// it imports the SDK from the server, signs in, mints a ticket, opens the
// WebSocket, joins a room and says hello there, recording each step in
// window.result (the test reads it).
const siteScript = `
const q = new URL(location.href).searchParams;
const server = q.get('server');
window.result = {};
try {
  const { Session, Khadga } = await import(server + '/sdk/khadga.js');
  result.imported = true;
  const session = await Session.login(q.get('user'), q.get('password'), { server });
  result.signedIn = session.user;
  result.ticket = (await session.ticket()).length > 0;
  const k = new Khadga({ session, server });
  result.welcome = (await k.connect()).user;
  await k.join('lobby');
  k.on('peer-connected', () => { result.sent = k.send('lobby', 'hello from ' + location.origin); });
  result.joined = true;
} catch (e) {
  result.error = String(e);
}
try {
  const r = await fetch(server + '/api/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"username":"nobody","password":"not the password"}' });
  result.loginStatus = r.status;
} catch (e) {
  result.loginError = String(e);
}
result.done = true;
`

// serveSite serves a page and its module script on ln, a listener of its
// own: another origin than the server's, though on the same 127.0.0.1.
func serveSite(t *testing.T, ln net.Listener) string {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>a site using khadga</title><script type="module" src="/site.js"></script>`)
	})
	mux.HandleFunc("GET /site.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, siteScript)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestSDKFromAnotherOrigin: a site on an origin listed with --allow-origin
// imports /sdk/khadga.js from the server, signs in, gets a ticket, opens
// the WebSocket, joins a room and chats with a person using the app. A
// site on an unlisted origin cannot import the SDK, and its API calls are
// refused before they are sent (the preflight fails).
func TestSDKFromAnotherOrigin(t *testing.T) {
	var lns [2]net.Listener
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	allowed := "http://" + lns[0].Addr().String()
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{AllowedOrigins: []string{allowed}}})
	serveSite(t, lns[0])
	refused := serveSite(t, lns[1])
	s.Register(t, "carol", password)
	query := "/?" + url.Values{"server": {s.URL}, "user": {"carol"}, "password": {password}}.Encode()

	dave := openPage(t, s.URL, "dave")
	dave.register("dave")
	dave.join("lobby")
	carol := openPage(t, allowed+query, "carol")
	carol.waitFor("the site's script", `window.result && result.done`)
	got := eval[map[string]any](carol, `result`)
	if got["imported"] != true || got["signedIn"] != "carol" || got["ticket"] != true || got["welcome"] != "carol" || got["joined"] != true || got["loginStatus"] != 401.0 {
		t.Fatalf("the allowed site: %v", got)
	}
	dave.waitMessage("carol", "hello from "+allowed)

	mallory := openPage(t, refused+query, "mallory")
	mallory.waitFor("the site's script", `window.result && result.done`)
	got = eval[map[string]any](mallory, `result`)
	if got["imported"] == true || !strings.Contains(fmt.Sprint(got["error"]), "Failed to fetch") || !strings.Contains(fmt.Sprint(got["loginError"]), "Failed to fetch") {
		t.Fatalf("the unlisted site: %v", got)
	}
}
