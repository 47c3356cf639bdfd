package signaling_test

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// httpCase is one hostile HTTP request and the answer it must get.
type httpCase struct {
	name, path, body string
	status           int
	code             string   // error code in the body
	header           []string // pairs
}

// runWSCase runs a hostile WebSocket case between alice and bob, in a room
// of its own: sessions of earlier cases may still be in their resume window
// and leave later.
func runWSCase(t *testing.T, s *signalingtest.Server, alice, bob signalingtest.Tokens, i int, tc wsCase) {
	t.Helper()
	room := fmt.Sprintf("lobby%d", i)
	a := s.Connect(t, alice.AccessToken, url.Values{"presence": {"0"}})
	b := s.Connect(t, bob.AccessToken, url.Values{"presence": {"0"}})
	a.Join(room)
	b.Join(room)
	a.Expect(proto.TypePeerJoined)
	tc.run(t, s, a, b)
}

// TestBadWebSocketFramesOverTLS sends the suite's hostile frames to a server
// with in-process TLS: wss:// runs the same hub code, and must answer the
// same way.
func TestBadWebSocketFramesOverTLS(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{TLS: true})
	alice, bob := s.User(t, "alice"), s.User(t, "bob")
	for i, tc := range wsCases() {
		t.Run(tc.name, func(t *testing.T) { runWSCase(t, s, alice, bob, i, tc) })
	}
}

// TestBadInputSuite sends more than sixty hostile inputs. Each must get its
// specific status or error code; afterwards the server must be ready, its
// stored users unchanged, its goroutines back to their baseline and its
// memory bounded.
func TestBadInputSuite(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{
		HeaderTimeout: 500 * time.Millisecond,
		// The suite fails many logins from one address on purpose; the
		// limiter has its own test.
		LoginLimits: auth.LimiterOptions{SlowAfter: 10_000, BlockAfter: 20_000},
	}})
	alice := s.User(t, "alice")
	bob := s.User(t, "bob")
	usersBefore := userSnapshot(t, s)
	nCases := 0
	count := func() { nCases++ }

	runtime.GC()
	baseline := runtime.NumGoroutine()

	t.Run("http", func(t *testing.T) {
		for _, tc := range httpCases(alice) {
			t.Run(tc.name, func(t *testing.T) {
				count()
				code, body := s.Post(t, tc.path, tc.body, tc.header...)
				assertError(t, code, body, tc.status, tc.code)
			})
		}
	})
	t.Run("rooms", func(t *testing.T) {
		for _, tc := range roomCases() {
			t.Run(tc.name, func(t *testing.T) {
				count()
				req, _ := http.NewRequest("PUT", s.URL+tc.path, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
				for i := 0; i+1 < len(tc.header); i += 2 {
					req.Header.Set(tc.header[i], tc.header[i+1])
				}
				resp, err := s.Client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assertError(t, resp.StatusCode, body, tc.status, tc.code)
			})
		}
		if rooms, err := s.Store().RoomsOwnedBy("alice"); err != nil || len(rooms) != 0 {
			t.Fatalf("refused claims stored rooms: %+v, %v", rooms, err)
		}
	})
	t.Run("tokens", func(t *testing.T) {
		for name, tok := range hostileTokens(t, s, alice) {
			t.Run(name, func(t *testing.T) {
				count()
				code, body := s.Post(t, "/api/ws-ticket", "", "Authorization", "Bearer "+tok)
				assertError(t, code, body, http.StatusUnauthorized, "unauthorized")
				code2, _ := dialStatus(t, s, bearer(tok), []string{proto.Subprotocol}, "")
				if code2 != http.StatusUnauthorized {
					t.Fatalf("websocket with the token: %d, want 401", code2)
				}
			})
		}
	})
	t.Run("websocket upgrade", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			h      http.Header
			protos []string
			query  string
			want   int
		}{
			{"no auth", nil, []string{proto.Subprotocol}, "", 401},
			{"forged ticket", nil, []string{proto.Subprotocol}, "ticket=forged", 401},
			{"spoofed origin", http.Header{"Authorization": {"Bearer " + alice.AccessToken}, "Origin": {"http://127.0.0.1.evil.example"}}, []string{proto.Subprotocol}, "", 403},
			{"null origin", http.Header{"Authorization": {"Bearer " + alice.AccessToken}, "Origin": {"null"}}, []string{proto.Subprotocol}, "", 403},
			{"no subprotocol", bearer(alice.AccessToken), nil, "", 400},
		} {
			t.Run(tc.name, func(t *testing.T) {
				count()
				if code, body := dialStatus(t, s, tc.h, tc.protos, tc.query); code != tc.want {
					t.Fatalf("got %d %q, want %d", code, body, tc.want)
				}
			})
		}
	})
	t.Run("websocket frames", func(t *testing.T) {
		for i, tc := range wsCases() {
			t.Run(tc.name, func(t *testing.T) {
				count()
				runWSCase(t, s, alice, bob, i, tc)
			})
		}
	})
	t.Run("resume", func(t *testing.T) {
		a := s.Connect(t, alice.AccessToken, nil)
		for name, tok := range map[string]string{"forged": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "another user's": a.Welcome.ResumeToken, "huge": strings.Repeat("x", 4000)} {
			t.Run(name, func(t *testing.T) {
				count()
				c := s.Connect(t, bob.AccessToken, url.Values{"resume": {tok}})
				if c.Welcome.Resumed || c.Welcome.Peer == a.Welcome.Peer || c.Welcome.User != "bob" {
					t.Fatalf("resume with a %s token: %+v", name, c.Welcome)
				}
			})
		}
	})
	t.Run("slowloris", func(t *testing.T) {
		count()
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		// Meanwhile the server answers others.
		if resp, err := http.Get(s.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz during slowloris: %v", err)
		}
		conn.SetReadDeadline(time.Now().Add(signalingtest.Timeout))
		start := time.Now()
		_, err = bufio.NewReader(conn).ReadString('\n')
		if err == nil || time.Since(start) >= signalingtest.Timeout {
			t.Fatalf("a client that never finishes its headers was not dropped (err %v after %v)", err, time.Since(start))
		}
	})
	if nCases < 60 {
		t.Fatalf("the suite ran %d hostile inputs, want at least 60", nCases)
	}
	t.Logf("%d hostile inputs", nCases)

	// The server is unmoved.
	resp, err := http.Get(s.URL + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz after the suite: %v %v", err, resp)
	}
	resp.Body.Close()
	if after := userSnapshot(t, s); after != usersBefore {
		t.Fatalf("stored users changed:\nbefore %s\nafter  %s", usersBefore, after)
	}
	waitGoroutines(t, baseline)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > 256<<20 {
		t.Fatalf("heap is %d MiB after the suite", ms.HeapAlloc>>20)
	}
}

// userSnapshot is the stored users as JSON (hashes included), to compare.
func userSnapshot(t *testing.T, s *signalingtest.Server) string {
	t.Helper()
	us, err := s.Store().ListUsers()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(us)
	return string(b)
}

// waitGoroutines polls until the goroutine count is back near baseline:
// connections of the suite end asynchronously after their clients close.
func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(signalingtest.Timeout)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline+5 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, baseline %d:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond) // polling a count, not synchronising
	}
}

func httpCases(alice signalingtest.Tokens) []httpCase {
	mib := strings.Repeat("a", 1<<20)
	huge := `{"username":"` + mib + `","password":"x"}`
	bearerA := []string{"Authorization", "Bearer " + alice.AccessToken}
	cs := []httpCase{
		{"truncated JSON", "/api/register", `{"username":"eve","pass`, 400, "bad_request", nil},
		{"empty body", "/api/login", ``, 400, "bad_request", nil},
		{"deeply nested JSON", "/api/register", strings.Repeat("[", 5000) + strings.Repeat("]", 5000), 400, "bad_request", nil},
		{"deeply nested value", "/api/login", `{"username":` + strings.Repeat(`{"a":`, 2000) + `1` + strings.Repeat(`}`, 2000) + `}`, 400, "bad_request", nil},
		{"non-UTF-8", "/api/register", "{\"username\":\"ev\xc3\x28e\",\"password\":\"0123456789\"}", 400, "bad_request", nil},
		{"UTF-16 BOM", "/api/login", "\xff\xfe{\x00}\x00", 400, "bad_request", nil},
		{"array instead of object", "/api/register", `["eve","0123456789"]`, 400, "bad_request", nil},
		{"number username", "/api/register", `{"username":12345,"password":"0123456789"}`, 400, "bad_request", nil},
		{"object password", "/api/login", `{"username":"alice","password":{"$ne":null}}`, 400, "bad_request", nil},
		{"null fields", "/api/register", `{"username":null,"password":null}`, 400, "bad_request", nil},
		{"unknown field role", "/api/register", `{"username":"eve","password":"0123456789","role":"admin"}`, 400, "bad_request", nil},
		{"unknown field recorder", "/api/login", `{"username":"alice","password":"x","role":"recorder"}`, 400, "bad_request", nil},
		{"duplicate keys", "/api/register", `{"username":"eve","username":"alice","password":"short"}`, 400, "bad_request", nil},
		{"missing password", "/api/register", `{"username":"eve"}`, 400, "bad_request", nil},
		{"missing username", "/api/register", `{"password":"0123456789"}`, 400, "bad_request", nil},
		{"missing everything at login", "/api/login", `{}`, 401, "unauthorized", nil},
		{"control characters", "/api/register", `{"username":"ev\u0000e","password":"0123456789"}`, 400, "bad_request", nil},
		{"newline in name", "/api/register", `{"username":"eve\nadmin","password":"0123456789"}`, 400, "bad_request", nil},
		{"homoglyph name", "/api/register", `{"username":"аlice","password":"0123456789"}`, 400, "bad_request", nil},
		{"fullwidth name", "/api/register", `{"username":"ａｌｉｃｅ","password":"0123456789"}`, 400, "bad_request", nil},
		{"10,000-character name", "/api/register", `{"username":"` + strings.Repeat("e", 10000) + `","password":"0123456789"}`, 400, "bad_request", nil},
		{"SQL injection name", "/api/register", `{"username":"alice' OR '1'='1","password":"0123456789"}`, 400, "bad_request", nil},
		{"SQL injection login", "/api/login", `{"username":"admin'--","password":"x' OR 1=1--"}`, 401, "unauthorized", nil},
		{"path traversal name", "/api/register", `{"username":"../../etc/passwd","password":"0123456789"}`, 400, "bad_request", nil},
		{"path traversal login", "/api/login", `{"username":"..%2f..%2fkhadga.db","password":"0123456789"}`, 401, "unauthorized", nil},
		{"1 KiB+ password", "/api/register", `{"username":"eve","password":"` + strings.Repeat("p", 1100) + `"}`, 400, "bad_request", nil},
		{"trailing garbage", "/api/login", `{"username":"alice","password":"x"} trailing`, 400, "bad_request", nil},
		{"refresh garbage", "/api/refresh", `{"refresh_token":"garbage"}`, 401, "unauthorized", nil},
		{"refresh access token", "/api/refresh", `{"refresh_token":"` + alice.AccessToken + `"}`, 401, "unauthorized", nil},
		{"refresh huge token", "/api/refresh", `{"refresh_token":"` + strings.Repeat("r", 10000) + `"}`, 401, "unauthorized", nil},
		{"logout garbage", "/api/logout", `{"refresh_token":"a.b.c"}`, 401, "unauthorized", nil},
		{"wrong content type", "/api/login", `username=alice&password=x`, 415, "bad_request", []string{"Content-Type", "application/x-www-form-urlencoded"}},
		// A page on another site can make a browser POST these without a
		// CORS preflight (issue 14, point 6).
		{"empty content type", "/api/login", `{"username":"alice","password":"x"}`, 415, "bad_request", []string{"Content-Type", ""}},
		{"text/plain content type", "/api/register", `{"username":"csrf","password":"0123456789"}`, 415, "bad_request", []string{"Content-Type", "text/plain"}},
		{"multipart content type", "/api/logout", `{"refresh_token":"a.b"}`, 415, "bad_request", []string{"Content-Type", "multipart/form-data; boundary=x"}},
		{"JSON look-alike content type", "/api/login", `{"username":"alice","password":"x"}`, 415, "bad_request", []string{"Content-Type", "application/jsonp"}},
		{"totp confirm with no enrollment", "/api/totp/confirm", `{"password":"` + password + `","code":"123456"}`, 409, "conflict", bearerA},
		{"totp confirm without the password", "/api/totp/confirm", `{"code":"123456"}`, 401, "unauthorized", bearerA},
		{"totp disable with wrong password", "/api/totp/disable", `{"password":"nope nope nope","code":"123456"}`, 401, "unauthorized", bearerA},
		{"unknown endpoint", "/api/admin", `{}`, 404, "not_found", nil},
		{"escaped path traversal", "/api/..%2f..%2fkhadga.db", `{}`, 404, "not_found", nil},
	}
	for _, ep := range []string{"/api/register", "/api/login", "/api/refresh", "/api/logout", "/api/totp/confirm", "/api/totp/disable"} {
		c := httpCase{"1 MiB body to " + ep, ep, huge, 413, "too_large", nil}
		if strings.HasPrefix(ep, "/api/totp") {
			c.header = bearerA
		}
		cs = append(cs, c)
	}
	return cs
}

// roomCases are hostile claims of a room (PUT /api/rooms/{name}) by a
// signed-in user: none may claim anything.
func roomCases() []httpCase {
	return []httpCase{
		{"room name with a slash", "/api/rooms/a%2Fb", `{}`, 400, "bad_request", nil},
		{"room name with a NUL", "/api/rooms/a%00b", `{}`, 400, "bad_request", nil},
		{"65-character room name", "/api/rooms/" + strings.Repeat("r", 65), `{}`, 400, "bad_request", nil},
		{"homoglyph room name", "/api/rooms/%D0%B0lice", `{}`, 400, "bad_request", nil},
		{"room cap of a billion", "/api/rooms/lobby", `{"max_members":1000000000}`, 400, "bad_request", nil},
		{"room cap overflowing int", "/api/rooms/lobby", `{"max_members":99999999999999999999}`, 400, "bad_request", nil},
		{"room owner in the body", "/api/rooms/lobby", `{"owner":"bob"}`, 400, "bad_request", nil},
		{"room invite chosen by the client", "/api/rooms/lobby", `{"invite":"mytoken"}`, 400, "bad_request", nil},
		{"room settings as text", "/api/rooms/lobby", `{}`, 415, "bad_request", []string{"Content-Type", "text/plain"}},
		{"1 MiB room settings", "/api/rooms/lobby", `{"max_members":` + strings.Repeat("1", 1<<20) + `}`, 413, "too_large", nil},
	}
}

// hostileTokens are access tokens an attacker might present.
func hostileTokens(t *testing.T, s *signalingtest.Server, alice signalingtest.Tokens) map[string]string {
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "role": "user", "typ": "access", "iss": "khadga", "aud": "khadga",
			"exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(), "iat": now.Unix(), "jti": "j"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	kid := s.Keys().SigningKID()
	sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
		tk := jwt.NewWithClaims(m, c)
		if kid != "" {
			tk.Header["kid"] = kid
		}
		str, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return str
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	parts := strings.Split(alice.AccessToken, ".")
	recorderPayload := jwtSegment(t, claims(func(c jwt.MapClaims) { c["role"] = "recorder" }))
	return map[string]string{
		"alg none":                  sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil), kid),
		"HS256 with the public key": sign(jwt.SigningMethodHS256, []byte(pub), claims(nil), kid),
		"another key, real kid":     sign(jwt.SigningMethodEdDSA, priv, claims(nil), kid),
		"unknown kid":               sign(jwt.SigningMethodEdDSA, priv, claims(nil), "no-such-kid"),
		"no kid":                    sign(jwt.SigningMethodEdDSA, priv, claims(nil), ""),
		"expired":                   expiredToken(t, s),
		"not yet valid":             sign(jwt.SigningMethodEdDSA, priv, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), kid),
		"tampered payload":          parts[0] + "." + jwtSegment(t, claims(func(c jwt.MapClaims) { c["sub"] = "bob" })) + "." + parts[2],
		"recorder role grafted":     parts[0] + "." + recorderPayload + "." + parts[2],
		"refresh token as access":   alice.RefreshToken,
		"garbage":                   "not.a.jwt",
		"empty segments":            "..",
		"huge":                      strings.Repeat("A", 5000),
	}
}

// expiredToken is a genuine token that expired 45 minutes ago: issued with
// the server's own keys under a clock set an hour back.
func expiredToken(t *testing.T, s *signalingtest.Server) string {
	t.Helper()
	keys, err := auth.NewKeys(s.Store(), auth.KeysOptions{Now: func() time.Time { return time.Now().Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := keys.IssueAccess(auth.Claims{User: "alice", Role: "user"}, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func jwtSegment(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	tk := jwt.NewWithClaims(jwt.SigningMethodNone, c)
	str, err := tk.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(str, ".")[1]
}

// wsCase is a hostile act on an open connection (a, in a room with b).
type wsCase struct {
	name string
	run  func(t *testing.T, s *signalingtest.Server, a, b *signalingtest.Client)
}

func expectCode(code proto.Code, ref string, raw string) func(*testing.T, *signalingtest.Server, *signalingtest.Client, *signalingtest.Client) {
	return func(t *testing.T, _ *signalingtest.Server, a, _ *signalingtest.Client) {
		a.SendRaw([]byte(raw))
		a.ExpectError(code, ref)
		stillRelays(t, a)
	}
}

// stillRelays checks that a's connection still works after the abuse.
func stillRelays(t *testing.T, a *signalingtest.Client) {
	t.Helper()
	a.Send(&proto.Message{Type: proto.TypePing, ID: "alive"})
	if m := a.Expect(proto.TypePong); m.Ref != "alive" {
		t.Fatalf("after the abuse: %+v", m)
	}
}

func wsCases() []wsCase {
	return []wsCase{
		{"binary frame", func(t *testing.T, _ *signalingtest.Server, a, _ *signalingtest.Client) {
			a.Conn.WriteMessage(websocket.BinaryMessage, []byte(`{"type":"ping"}`))
			a.ExpectError(proto.CodeBadMessage, "")
			stillRelays(t, a)
		}},
		{"malformed JSON", expectCode(proto.CodeBadMessage, "", `{"type":"signal","to":`)},
		{"deeply nested data", expectCode(proto.CodeBadMessage, "", `{"type":"signal","to":"x","data":`+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+`}`)},
		{"wrong type of to", expectCode(proto.CodeBadMessage, "", `{"type":"signal","id":"w","to":5,"data":{}}`)},
		{"unknown envelope field", expectCode(proto.CodeBadMessage, "", `{"type":"ping","id":"u","admin":true}`)},
		{"unknown type", expectCode(proto.CodeUnknownType, "t", `{"type":"shutdown","id":"t"}`)},
		{"server-only type", expectCode(proto.CodeUnknownType, "w", `{"type":"welcome","id":"w"}`)},
		{"newer version", expectCode(proto.CodeUnsupportedVersion, "v", `{"type":"ping","id":"v","v":99}`)},
		{"spoofed from", func(t *testing.T, _ *signalingtest.Server, a, b *signalingtest.Client) {
			a.SendRaw([]byte(`{"type":"signal","id":"f","to":"` + b.Welcome.Peer + `","from":"` + b.Welcome.Peer + `","data":{}}`))
			a.ExpectError(proto.CodeBadMessage, "f")
			stillRelays(t, a)
		}},
		{"signal to yourself", func(t *testing.T, _ *signalingtest.Server, a, _ *signalingtest.Client) {
			a.SendRaw([]byte(`{"type":"signal","id":"me","to":"` + a.Welcome.Peer + `","data":{}}`))
			a.ExpectError(proto.CodeBadMessage, "me")
			stillRelays(t, a)
		}},
		{"signal to nobody", expectCode(proto.CodeUnknownPeer, "n", `{"type":"signal","id":"n","to":"nobody","data":{}}`)},
		{"signal with bad peer id", expectCode(proto.CodeBadMessage, "p", `{"type":"signal","id":"p","to":"../x","data":{}}`)},
		{"signal to a peer in another room", func(t *testing.T, s *signalingtest.Server, a, b *signalingtest.Client) {
			b.Send(&proto.Message{Type: proto.TypeLeave, ID: "l", Room: b.Rooms()[0]})
			b.Expect(proto.TypeAck)
			b.Join("elsewhere")
			a.Expect(proto.TypePeerLeft)
			a.SendRaw([]byte(`{"type":"signal","id":"o","to":"` + b.Welcome.Peer + `","data":{}}`))
			a.ExpectError(proto.CodeNotInRoom, "o")
		}},
		{"join a bad room name", expectCode(proto.CodeBadMessage, "j", `{"type":"join","id":"j","room":"../../admin"}`)},
		{"join with a hostile invite", expectCode(proto.CodeBadMessage, "i", `{"type":"join","id":"i","room":"r","data":{"invite":"../\u0000"}}`)},
		{"join with a 10,000-byte invite", expectCode(proto.CodeBadMessage, "i", `{"type":"join","id":"i","room":"r","data":{"invite":"`+strings.Repeat("i", 10000)+`"}}`)},
		{"join with unknown data", expectCode(proto.CodeBadMessage, "i", `{"type":"join","id":"i","room":"r","data":{"owner":true}}`)},
		{"join with data not an object", expectCode(proto.CodeBadMessage, "i", `{"type":"join","id":"i","room":"r","data":["invite"]}`)},
		{"join 10,000 rooms", func(t *testing.T, _ *signalingtest.Server, a, _ *signalingtest.Client) {
			a.Conn.SetWriteDeadline(time.Now().Add(signalingtest.Timeout))
			for i := range 10000 {
				b, _ := json.Marshal(&proto.Message{Type: proto.TypeJoin, ID: fmt.Sprint(i), Room: fmt.Sprintf("r%d", i)})
				if err := a.Conn.WriteMessage(websocket.TextMessage, b); err != nil {
					break // closed by the server for abuse
				}
			}
			for {
				m, ok := a.NextOrClosed()
				if !ok {
					t.Fatal("joining 10,000 rooms never got too_many_rooms")
				}
				if m.Type == proto.TypeError && strings.Contains(string(m.Data), string(proto.CodeTooManyRooms)) {
					return
				}
			}
		}},
		{"over the size limit", func(t *testing.T, _ *signalingtest.Server, a, b *signalingtest.Client) {
			// The server may close mid-write; the close code is what counts.
			a.Conn.SetWriteDeadline(time.Now().Add(signalingtest.Timeout))
			a.Conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"signal","to":"x","data":{"s":"`+strings.Repeat("a", 100<<10)+`"}}`))
			if code := signalingtest.CloseCode(a.Closed()); code != websocket.CloseMessageTooBig {
				t.Fatalf("close code %d, want 1009", code)
			}
			stillRelays(t, b)
		}},
		{"thousands of fragments", func(t *testing.T, s *signalingtest.Server, _, b *signalingtest.Client) {
			// A dialer with a 16-byte write buffer sends one message as
			// thousands of continuation frames.
			tok := s.Login(t, "alice", password).AccessToken
			d := websocket.Dialer{Subprotocols: []string{proto.Subprotocol}, WriteBufferSize: 16, TLSClientConfig: signalingtest.ClientTLS()}
			c, _, err := d.Dial(s.WSURL+"?presence=0", bearer(tok))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.ReadMessage() // welcome
			msg := `{"type":"ping","id":"frag","data":{"pad":"` + strings.Repeat("p", 40000) + `"}}`
			c.SetWriteDeadline(time.Now().Add(signalingtest.Timeout))
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(signalingtest.Timeout))
			_, got, err := c.ReadMessage()
			if err != nil || !strings.Contains(string(got), `"ref":"frag"`) {
				t.Fatalf("answer to a fragmented message: %s %v", got, err)
			}
			stillRelays(t, b)
		}},
		{"10,000 messages a second", func(t *testing.T, _ *signalingtest.Server, a, b *signalingtest.Client) {
			flood := []byte(`{"type":"ping"}`)
			a.Conn.SetWriteDeadline(time.Now().Add(signalingtest.Timeout))
			for range 10000 {
				if err := a.Conn.WriteMessage(websocket.TextMessage, flood); err != nil {
					break // closed by the server for abuse: also a pass
				}
			}
			limited := false
			for !limited {
				m, ok := a.NextOrClosed()
				if !ok {
					break
				}
				if m.Type == proto.TypeError && strings.Contains(string(m.Data), string(proto.CodeRateLimited)) {
					limited = true
				}
			}
			if !limited {
				t.Fatal("a flood of 10,000 messages never got rate_limited")
			}
			stillRelays(t, b)
		}},
	}
}
