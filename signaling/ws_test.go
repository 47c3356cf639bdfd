package signaling_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// dialStatus tries a WebSocket and returns the HTTP status of the refusal
// (or 101) and the body.
func dialStatus(t *testing.T, s *signalingtest.Server, h http.Header, protocols []string, query string) (int, string) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: protocols, HandshakeTimeout: signalingtest.Timeout,
		TLSClientConfig: signalingtest.ClientTLS()}
	u := s.WSURL
	if query != "" {
		u += "?" + query
	}
	c, resp, err := d.Dial(u, h)
	if err == nil {
		c.Close()
		return resp.StatusCode, ""
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// forSchemes runs a test against a plain server (ws://) and one with
// in-process TLS (wss://), as khadga serve runs with --tls-cert or ACME:
// the same hub code serves both.
func forSchemes(t *testing.T, test func(t *testing.T, opts signalingtest.Options)) {
	t.Run("ws", func(t *testing.T) { test(t, signalingtest.Options{}) })
	t.Run("wss", func(t *testing.T) { test(t, signalingtest.Options{TLS: true}) })
}

func TestWebSocketAuth(t *testing.T) { forSchemes(t, testWebSocketAuth) }

func testWebSocketAuth(t *testing.T, opts signalingtest.Options) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	opts.Config = signaling.Config{Now: now, AllowedOrigins: []string{"https://app.example"}}
	s := signalingtest.Start(t, opts)
	tok := s.User(t, "alice")
	v1 := []string{proto.Subprotocol}

	foreign := func(alg jwt.SigningMethod, key any, kid string) string {
		claims := jwt.MapClaims{"sub": "alice", "role": "user", "typ": "access", "iss": "khadga", "aud": "khadga",
			"exp": now().Add(time.Hour).Unix(), "nbf": now().Unix(), "iat": now().Unix(), "jti": "x"}
		tk := jwt.NewWithClaims(alg, claims)
		tk.Header["kid"] = kid
		str, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return str
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	kid := s.Keys().SigningKID()
	parts := strings.Split(tok.AccessToken, ".")
	payload := strings.Replace(parts[1], parts[1][:4], "eyJh", 1)

	for _, tc := range []struct {
		name      string
		h         http.Header
		protocols []string
		want      int
		body      string
	}{
		{"valid", bearer(tok.AccessToken), v1, 101, ""},
		{"no token", nil, v1, 401, "missing bearer token"},
		{"signed with another key", bearer(foreign(jwt.SigningMethodEdDSA, otherKey, kid)), v1, 401, "invalid access token"},
		{"alg none", bearer(foreign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid)), v1, 401, "invalid access token"},
		{"HS256 with a guessable key", bearer(foreign(jwt.SigningMethodHS256, []byte("khadga"), kid)), v1, 401, "invalid access token"},
		{"tampered payload", bearer(parts[0] + "." + payload + "." + parts[2]), v1, 401, "invalid access token"},
		{"refresh token as access", bearer(tok.RefreshToken), v1, 401, "invalid access token"},
		{"no subprotocol", bearer(tok.AccessToken), nil, 400, "khadga.v1"},
		{"unknown version only", bearer(tok.AccessToken), []string{"khadga.v9"}, 400, "khadga.v1"},
		{"bad origin", http.Header{"Authorization": {"Bearer " + tok.AccessToken}, "Origin": {"https://evil.example"}}, v1, 403, "origin not allowed"},
		{"allowed origin", http.Header{"Authorization": {"Bearer " + tok.AccessToken}, "Origin": {"https://app.example"}}, v1, 101, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := dialStatus(t, s, tc.h, tc.protocols, "")
			if code != tc.want || !strings.Contains(body, tc.body) {
				t.Fatalf("got %d %q, want %d containing %q", code, body, tc.want, tc.body)
			}
		})
	}

	t.Run("ticket is single-use", func(t *testing.T) {
		q := ticketQuery(t, s, tok.AccessToken)
		origin := http.Header{"Origin": {s.URL}} // a browser on the server's own origin
		if code, body := dialStatus(t, s, origin, v1, q); code != 101 {
			t.Fatalf("first use: %d %s", code, body)
		}
		if code, _ := dialStatus(t, s, origin, v1, q); code != 401 {
			t.Fatalf("second use: %d, want 401", code)
		}
	})

	t.Run("a refused handshake does not spend the ticket", func(t *testing.T) {
		q := ticketQuery(t, s, tok.AccessToken)
		req, err := http.NewRequest(http.MethodGet, s.URL+"/ws?"+q, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Origin": {s.URL},
			"Sec-Websocket-Version": {"8"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Protocol": v1}
		resp, err := s.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("version 8: %d, want 400", resp.StatusCode)
		}
		if code, body := dialStatus(t, s, http.Header{"Origin": {s.URL}}, v1, q); code != 101 {
			t.Fatalf("the ticket after a refused handshake: %d %s, want 101", code, body)
		}
	})

	t.Run("expired token", func(t *testing.T) {
		clock.Add(int64(16 * time.Minute))
		code, body := dialStatus(t, s, bearer(tok.AccessToken), v1, "")
		if code != 401 || !strings.Contains(body, "expired") {
			t.Fatalf("got %d %q, want 401 expired", code, body)
		}
	})
}

// ticketQuery asks s for a WebSocket ticket with access and returns the
// query that presents it.
func ticketQuery(t *testing.T, s *signalingtest.Server, access string) string {
	t.Helper()
	code, body := s.Post(t, "/api/ws-ticket", "", "Authorization", "Bearer "+access)
	var tk struct{ Ticket string }
	if code != 200 || json.Unmarshal(body, &tk) != nil {
		t.Fatalf("ticket: %d %s", code, body)
	}
	return "ticket=" + url.QueryEscape(tk.Ticket)
}

func TestSignalRelay(t *testing.T) { forSchemes(t, testSignalRelay) }

func testSignalRelay(t *testing.T, opts signalingtest.Options) {
	s := signalingtest.Start(t, opts)
	alice := s.Connect(t, s.User(t, "alice").AccessToken, nil)
	bob := s.Connect(t, s.User(t, "bob").AccessToken, nil)
	eve := s.Connect(t, s.User(t, "eve").AccessToken, nil)

	if peers := alice.Join("lobby"); len(peers) != 0 {
		t.Fatalf("empty room has members %v", peers)
	}
	peers := bob.Join("lobby")
	if len(peers) != 1 || peers[0].Peer != alice.Welcome.Peer || peers[0].User != "alice" || peers[0].Role != proto.RoleUser {
		t.Fatalf("joined peers %+v", peers)
	}
	pj := alice.Expect(proto.TypePeerJoined)
	var m proto.Member
	json.Unmarshal(pj.Data, &m)
	if m.Peer != bob.Welcome.Peer || m.User != "bob" {
		t.Fatalf("peer-joined %+v", m)
	}
	eve.Join("other")

	offer := json.RawMessage(`{"description":{"type":"offer","sdp":"v=0"}}`)
	alice.Send(&proto.Message{Type: proto.TypeSignal, ID: "s1", To: bob.Welcome.Peer, Data: offer})
	got := bob.Expect(proto.TypeSignal)
	if got.From != alice.Welcome.Peer || string(got.Data) != string(offer) {
		t.Fatalf("bob got %+v", got)
	}

	t.Run("not in a shared room", func(t *testing.T) {
		alice.Send(&proto.Message{Type: proto.TypeSignal, ID: "s2", To: eve.Welcome.Peer, Data: offer})
		alice.ExpectError(proto.CodeNotInRoom, "s2")
		// eve receives nothing: her next message is the answer to her own ping.
		eve.Send(&proto.Message{Type: proto.TypePing, ID: "p"})
		if m := eve.Expect(proto.TypePong); m.Ref != "p" {
			t.Fatalf("eve: %+v", m)
		}
	})
	t.Run("spoofed from", func(t *testing.T) {
		alice.SendRaw([]byte(`{"type":"signal","id":"s3","to":"` + bob.Welcome.Peer + `","from":"` + eve.Welcome.Peer + `","data":{}}`))
		alice.ExpectError(proto.CodeBadMessage, "s3")
	})
	t.Run("bad frames keep the connection", func(t *testing.T) {
		alice.SendRaw([]byte(`{"type":"signal",`))
		alice.ExpectError(proto.CodeBadMessage, "")
		alice.SendRaw([]byte(`{"type":"teleport","id":"u"}`))
		alice.ExpectError(proto.CodeUnknownType, "u")
		alice.SendRaw([]byte(`{"type":"ping","id":"v2","v":2}`))
		alice.ExpectError(proto.CodeUnsupportedVersion, "v2")
		alice.Send(&proto.Message{Type: proto.TypeSignal, ID: "s4", To: bob.Welcome.Peer, Data: offer})
		if got := bob.Expect(proto.TypeSignal); got.From != alice.Welcome.Peer {
			t.Fatalf("relay after bad frames: %+v", got)
		}
	})
	t.Run("oversized frame", func(t *testing.T) {
		big := `{"type":"signal","to":"` + bob.Welcome.Peer + `","data":{"x":"` + strings.Repeat("a", 70<<10) + `"}}`
		// The server may close while the frame is still being written; the
		// close code is what counts.
		eve.Conn.SetWriteDeadline(time.Now().Add(signalingtest.Timeout))
		eve.Conn.WriteMessage(websocket.TextMessage, []byte(big))
		err := eve.Closed()
		if code := signalingtest.CloseCode(err); code != websocket.CloseMessageTooBig {
			t.Fatalf("close after oversized frame: %v (code %d), want 1009", err, code)
		}
		// The others are unaffected.
		alice.Send(&proto.Message{Type: proto.TypeSignal, To: bob.Welcome.Peer, Data: offer})
		bob.Expect(proto.TypeSignal)
	})
}

func TestGracefulShutdownAsksClientsToReconnect(t *testing.T) {
	forSchemes(t, testGracefulShutdown)
}

func testGracefulShutdown(t *testing.T, opts signalingtest.Options) {
	s := signalingtest.Start(t, opts)
	c := s.Connect(t, s.User(t, "alice").AccessToken, nil)
	stopTellingToReconnect(t, s, c)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, _, err := s.DialWS(ctx, "x", nil); err == nil {
		t.Fatal("server still accepts after shutdown")
	}
}

// A connection that sends no request (a proxy's spare connection, a port
// scan) holds up net/http's Shutdown for five seconds. It must not eat the
// WebSocket clients' shutdown grace: they are told to reconnect at once,
// and the shutdown ends cleanly.
func TestShutdownIsNotHeldUpByASilentConnection(t *testing.T) {
	forSchemes(t, testShutdownSilentConn)
}

func testShutdownSilentConn(t *testing.T, opts signalingtest.Options) {
	opts.Config.ShutdownGrace = 3 * time.Second
	s := signalingtest.Start(t, opts)
	c := s.Connect(t, s.User(t, "alice").AccessToken, nil)
	u, _ := url.Parse(s.URL)
	silent, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	stopTellingToReconnect(t, s, c)
}

// stopTellingToReconnect stops s and checks that c is told to reconnect
// and closed with 1012, and that Stop returns no error.
func stopTellingToReconnect(t *testing.T, s *signalingtest.Server, c *signalingtest.Client) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Stop() }()
	c.Expect(proto.TypeReconnect)
	if code := signalingtest.CloseCode(c.Closed()); code != websocket.CloseServiceRestart {
		t.Fatalf("close code %d, want 1012", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(signalingtest.Timeout):
		t.Fatal("Stop did not return")
	}
}

func TestResumeThroughTheServer(t *testing.T) { forSchemes(t, testResumeThroughTheServer) }

func testResumeThroughTheServer(t *testing.T, opts signalingtest.Options) {
	opts.Config = signaling.Config{ResumeWindow: 20 * time.Second}
	s := signalingtest.Start(t, opts)
	aliceTok := s.User(t, "alice").AccessToken
	alice := s.Connect(t, aliceTok, nil)
	bob := s.Connect(t, s.User(t, "bob").AccessToken, nil)
	alice.Join("lobby")
	bob.Join("lobby")
	alice.Expect(proto.TypePeerJoined)

	// Alice's socket drops; once the server has seen it go, Bob signals her.
	alice.Conn.Close()
	waitFor(t, "the server to see alice's socket drop", func() bool { return s.HubStats().Connections == 1 })
	bob.Send(&proto.Message{Type: proto.TypeSignal, ID: "away", To: alice.Welcome.Peer, Data: json.RawMessage(`{"n":1}`)})

	again := s.Connect(t, aliceTok, url.Values{"resume": {alice.Welcome.ResumeToken}})
	if !again.Welcome.Resumed || again.Welcome.Peer != alice.Welcome.Peer {
		t.Fatalf("resume welcome %+v, want the old peer id %s", again.Welcome, alice.Welcome.Peer)
	}
	if again.Welcome.ResumeToken == alice.Welcome.ResumeToken {
		t.Fatal("resume token was not renewed")
	}
	if got := again.Expect(proto.TypeSignal); got.From != bob.Welcome.Peer || string(got.Data) != `{"n":1}` {
		t.Fatalf("queued signal %+v", got)
	}
	// Bob saw no peer-left: his next message answers his own ping.
	bob.Send(&proto.Message{Type: proto.TypePing, ID: "p"})
	if m := bob.Expect(proto.TypePong); m.Ref != "p" {
		t.Fatalf("bob got %+v", m)
	}
	// A used resume token does not resume again.
	third := s.Connect(t, aliceTok, url.Values{"resume": {alice.Welcome.ResumeToken}})
	if third.Welcome.Resumed || third.Welcome.Peer == alice.Welcome.Peer {
		t.Fatalf("a used resume token resumed: %+v", third.Welcome)
	}
}

// waitFor polls cond (an observable state of the server) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(signalingtest.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling observable state, not synchronising
	}
}

func TestCredentialsInTheProtocolHeader(t *testing.T) {
	forSchemes(t, testCredentialsInTheProtocolHeader)
}

// A browser puts its ticket and resume token in Sec-WebSocket-Protocol,
// after the protocol version, so that neither is in the URL that proxies
// log: the ticket signs in once, the resume token resumes, and the server
// chooses the version, never an entry that carries a credential.
func testCredentialsInTheProtocolHeader(t *testing.T, opts signalingtest.Options) {
	opts.Config = signaling.Config{ResumeWindow: 20 * time.Second}
	s := signalingtest.Start(t, opts)
	access := s.User(t, "alice").AccessToken
	ticket := strings.TrimPrefix(ticketQuery(t, s, access), "ticket=")
	ticket, _ = url.QueryUnescape(ticket)
	dial := func(protocols ...string) (*websocket.Conn, proto.Welcome) {
		t.Helper()
		d := websocket.Dialer{Subprotocols: append([]string{proto.Subprotocol}, protocols...),
			HandshakeTimeout: signalingtest.Timeout, TLSClientConfig: signalingtest.ClientTLS()}
		ws, resp, err := d.Dial(s.WSURL, nil)
		if err != nil {
			t.Fatalf("dial with %v: %v (%v)", protocols, err, resp)
		}
		t.Cleanup(func() { ws.Close() })
		if ws.Subprotocol() != proto.Subprotocol {
			t.Fatalf("the server chose %q, want %q", ws.Subprotocol(), proto.Subprotocol)
		}
		_ = ws.SetReadDeadline(time.Now().Add(signalingtest.Timeout))
		var m proto.Message
		var w proto.Welcome
		if err := ws.ReadJSON(&m); err != nil || m.Type != proto.TypeWelcome || m.DecodeData(&w) != nil {
			t.Fatalf("welcome: %v %+v", err, m)
		}
		return ws, w
	}
	ws, w := dial("khadga.ticket." + ticket)
	if w.User != "alice" {
		t.Fatalf("signed in as %q, want alice", w.User)
	}
	if code, body := dialStatus(t, s, nil, []string{proto.Subprotocol, "khadga.ticket." + ticket}, ""); code != http.StatusUnauthorized {
		t.Errorf("the spent ticket again: %d %s, want 401", code, body)
	}

	// An entry on a second line of the header counts (RFC 6455 allows
	// the field more than once), and one wins over the query parameter.
	ticket = strings.TrimPrefix(ticketQuery(t, s, access), "ticket=")
	ticket, _ = url.QueryUnescape(ticket)
	h := http.Header{"Sec-Websocket-Protocol": {proto.Subprotocol, "khadga.ticket." + ticket}}
	if code, body := dialStatus(t, s, h, nil, "ticket=not-a-ticket"); code != http.StatusSwitchingProtocols {
		t.Errorf("a ticket on the header's second line, a wrong one in the query: %d %s, want 101", code, body)
	}

	ws.NetConn().Close() // the socket drops
	waitFor(t, "the server to see the sockets drop", func() bool { return s.HubStats().Connections == 0 })
	ticket = strings.TrimPrefix(ticketQuery(t, s, access), "ticket=")
	ticket, _ = url.QueryUnescape(ticket)
	_, again := dial("khadga.ticket."+ticket, "khadga.resume."+w.ResumeToken)
	if !again.Resumed || again.Peer != w.Peer {
		t.Fatalf("resume through the header: %+v, want the session of peer %s back", again, w.Peer)
	}
}

// TestTicketStoreHiccup: a WebSocket opened with a ticket while the
// account store cannot be reached (a cluster without its JetStream
// quorum) is a 503 that asks for a retry, as every request that reads
// accounts answers then (docs/protocol.md), not the 401 of a used or
// forged ticket; and the ticket is not spent, so the retry works.
func TestTicketStoreHiccup(t *testing.T) {
	st := &flakyUsers{Backend: openBolt(t)}
	s := signalingtest.Start(t, signalingtest.Options{Store: st})
	tok := s.User(t, "ann")
	q := ticketQuery(t, s, tok.AccessToken)

	st.fail.Store(true)
	if code, body := dialStatus(t, s, nil, []string{proto.Subprotocol}, q); code != http.StatusServiceUnavailable || !strings.Contains(body, "unavailable") {
		t.Fatalf("ticket while the store is unreachable: %d %s, want 503 unavailable", code, body)
	}
	if code, body := dialStatus(t, s, nil, []string{proto.Subprotocol}, q); code != http.StatusSwitchingProtocols {
		t.Fatalf("the same ticket retried: %d %s, want 101", code, body)
	}
}
