package signaling_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestMisbehavingClientsInTheLog reads the log at its default level
// (info) while clients misbehave, as the operator who is asked "why was
// this user refused, or disconnected?" does. Floods of refused requests
// (upgrades from a foreign origin or with made-up tokens, made-up bot
// refresh tokens, wrong passwords) write a bounded number of lines
// however many requests come; bad messages on a connection write none
// until the connection is closed for them. Each disconnect and refusal
// of a known user (a wrong password, too many bad messages, an oversized
// message, too many connections) has a line naming the user and the
// reason, the last three even after the floods. No line holds a password, token or TURN credential.
func TestMisbehavingClientsInTheLog(t *testing.T) {
	var buf testlog.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := signalingtest.Start(t, signalingtest.Options{TURN: true, Config: signaling.Config{
		Logger: log, AllowedOrigins: []string{"https://app.example"}, MaxConnsPerUser: 1,
		LoginLimits: auth.LimiterOptions{SlowAfter: 1000, BlockAfter: 2000},
	}})
	secrets := []string{"correct horse battery"}
	toks := map[string]signalingtest.Tokens{}
	for _, name := range []string{"mallory", "oscar", "trudy"} { // one a disconnect, each waiting for its resume
		toks[name] = s.User(t, name)
		secrets = append(secrets, toks[name].AccessToken, toks[name].RefreshToken)
	}
	tok := toks["mallory"]
	before := len(buf.String())
	s.Post(t, "/api/login", map[string]string{"username": "trudy", "password": "zqx not trudy's"})
	wantLine(t, buf.String()[before:], "user=trudy", "login refused", "wrong password")
	secrets = append(secrets, "zqx not trudy's")
	started := len(buf.String())

	const flood = 200
	floodStart := time.Now()
	v1 := []string{proto.Subprotocol}
	for i := range flood {
		dialStatus(t, s, http.Header{"Authorization": {"Bearer " + tok.AccessToken},
			"Origin": {fmt.Sprintf("https://evil%d.example", i)}}, v1, "")
		bogus := fmt.Sprintf("zqx-made-up-token-%d", i)
		dialStatus(t, s, bearer(bogus), v1, "")
		bot := fmt.Sprintf("kbt_zqx-made-up-bot-token-%d", i)
		s.Post(t, "/api/refresh", map[string]string{"refresh_token": bot})
		secrets = append(secrets, bogus, bot)
	}
	for i := range flood / 10 {
		pw := fmt.Sprintf("zqx wrong password %d", i)
		s.Post(t, "/api/login", map[string]string{"username": "mallory", "password": pw})
		secrets = append(secrets, pw)
	}
	// Four kinds of refusal log (origin, credentials, bot token, login),
	// each within its budget.
	budget := 4 * (signaling.RefusalBurst + int(time.Since(floodStart)/signaling.RefusalEvery) + 1)
	if floodLines := lines(buf.String()[started:]); len(floodLines) > budget {
		t.Errorf("%d requests wrote %d lines at info; want at most %d:\n%s", 3*flood+flood/10,
			len(floodLines), budget, strings.Join(floodLines[:budget], "\n"))
	}

	// Bad messages, then the close for too many of them.
	c := s.Connect(t, tok.AccessToken, nil)
	secrets = append(secrets, c.Welcome.ResumeToken)
	for _, ice := range c.Welcome.ICEServers {
		if ice.Credential != "" {
			secrets = append(secrets, ice.Credential)
		}
	}
	before = len(buf.String())
	for !closedAfter(c, []byte(`{"type":`)) {
	}
	wantLine(t, buf.String()[before:], "user=mallory", "bad messages")

	// An oversized message.
	c = s.Connect(t, toks["oscar"].AccessToken, nil)
	before = len(buf.String())
	c.Conn.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 1<<17))
	for {
		if _, open := c.NextOrClosed(); !open {
			break
		}
	}
	waitFor(t, "the oversized message's connection closed", func() bool { return s.HubStats().Connections == 0 })
	wantLine(t, buf.String()[before:], "user=oscar", "read limit")

	// Too many connections.
	c = s.Connect(t, toks["trudy"].AccessToken, nil)
	before = len(buf.String())
	if code, _ := dialStatus(t, s, bearer(toks["trudy"].AccessToken), v1, ""); code != http.StatusTooManyRequests {
		t.Fatalf("a second connection past --max-conns-per-user 1: %d, want 429", code)
	}
	wantLine(t, buf.String()[before:], "user=trudy", "connections")
	c.Close()

	for _, sec := range secrets {
		if strings.Contains(buf.String(), sec) {
			t.Errorf("the log holds a secret %q", sec)
		}
	}
}

// closedAfter sends b and reports whether the server closed the
// connection in answer, reading what came back.
func closedAfter(c *signalingtest.Client, b []byte) bool {
	if c.Conn.WriteMessage(websocket.TextMessage, b) != nil {
		return true
	}
	_, open := c.NextOrClosed()
	return !open
}

// lines splits a log into its lines.
func lines(log string) []string {
	if log = strings.TrimSpace(log); log == "" {
		return nil
	}
	return strings.Split(log, "\n")
}

// wantLine fails t unless a line of log holds each of want.
func wantLine(t *testing.T, log string, want ...string) {
	t.Helper()
next:
	for _, l := range lines(log) {
		for _, w := range want {
			if !strings.Contains(l, w) {
				continue next
			}
		}
		return
	}
	t.Errorf("no line at info holds %q; the log:\n%s", want, log)
}
