package signaling_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/prometheus/client_golang/prometheus"
)

// TestSecretsNeverLogged runs a full session (register with email, login,
// tickets, WebSocket, signals, refresh, a failed login, a reused refresh
// token, a room invite made and used) with the server logging at debug level, then greps the logs, the
// error answers and /metrics for every secret involved.
func TestSecretsNeverLogged(t *testing.T) {
	capture, smtpAddr := startSMTP(t)

	logs := &testlog.Buffer{}
	reg := prometheus.NewRegistry()
	const smtpPassword = "smtp-pass-Zq81"
	s := signalingtest.Start(t, signalingtest.Options{TURN: true, Config: signaling.Config{
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		SMTPURL:  "smtp://mailer:" + smtpPassword + "@" + smtpAddr,
		SMTPFrom: "khadga@example.org", Registerer: reg, Gatherer: reg,
	}})

	var answers bytes.Buffer
	post := func(path string, body any, h ...string) []byte {
		_, b := s.Post(t, path, body, h...)
		answers.Write(b)
		return b
	}
	const pw = "secret password 77"
	post("/api/register", map[string]string{"username": "alice", "password": pw, "email": "alice@example.org"})
	msg := capture.nextMail(t)
	select {
	case got := <-capture.passwords:
		if got != smtpPassword {
			t.Fatalf("SMTP server got password %q", got)
		}
	default:
		t.Fatal("the server did not authenticate to SMTP")
	}
	link := msg[strings.Index(msg, "http://"):]
	link = strings.TrimSpace(link[:strings.IndexAny(link, "\r\n")])
	linkToken := strings.TrimPrefix(link[strings.Index(link, "token="):], "token=")
	resp, err := httpClientNoRedirect.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	post("/api/login", map[string]string{"username": "alice", "password": "wrong " + pw})
	var tok signalingtest.Tokens
	json.Unmarshal(post("/api/login", map[string]string{"username": "alice", "password": pw}), &tok)
	var tk struct{ Ticket string }
	json.Unmarshal(post("/api/ws-ticket", "", "Authorization", "Bearer "+tok.AccessToken), &tk)
	var next signalingtest.Tokens
	json.Unmarshal(post("/api/refresh", map[string]string{"refresh_token": tok.RefreshToken}), &next)
	post("/api/refresh", map[string]string{"refresh_token": tok.RefreshToken}) // reuse: revokes the family
	// The family is revoked, so its access tokens no longer open a socket:
	// sign in again.
	var fresh signalingtest.Tokens
	json.Unmarshal(post("/api/login", map[string]string{"username": "alice", "password": pw}), &fresh)

	a := s.Connect(t, fresh.AccessToken, nil)
	post("/api/register", map[string]string{"username": "bob", "password": pw, "email": "bob@example.org"})
	bobMail := capture.nextMail(t)
	bobLink := bobMail[strings.Index(bobMail, "http://"):]
	resp, err = httpClientNoRedirect.Get(strings.TrimSpace(bobLink[:strings.IndexAny(bobLink, "\r\n")]))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	b := s.Connect(t, s.Login(t, "bob", pw).AccessToken, nil)
	a.Join("lobby")
	b.Join("lobby")
	sdp := `{"description":{"type":"offer","sdp":"v=0 o=- SECRET-SDP-BODY"}}`
	a.Send(&proto.Message{Type: proto.TypeSignal, To: b.Welcome.Peer, Data: json.RawMessage(sdp)})
	b.Expect(proto.TypeSignal)
	code, body, _ := call(t, s, "PUT", "/api/rooms/hideout", fresh.AccessToken, roomReq{Invite: true})
	invite := settings(t, code, body, http.StatusCreated).InviteToken
	b.Send(&proto.Message{Type: proto.TypeJoin, ID: "h1", Room: "hideout", Data: json.RawMessage(`{"invite":"` + invite[:10] + `x"}`)})
	b.ExpectError(proto.CodeBadInvite, "h1")
	b.Send(&proto.Message{Type: proto.TypeJoin, ID: "h2", Room: "hideout", Data: json.RawMessage(`{"invite":"` + invite + `"}`)})
	b.Expect(proto.TypeJoined)
	again := s.Connect(t, fresh.AccessToken, url.Values{"resume": {a.Welcome.ResumeToken}})
	_ = again
	_, metrics := getMetrics(t, s, "")

	keys, err := s.Store().SigningKeys()
	if err != nil || len(keys) == 0 {
		t.Fatal(err)
	}
	turnUser := a.Welcome.ICEServers[len(a.Welcome.ICEServers)-1].Credential
	secrets := map[string]string{
		"password":        pw,
		"SMTP password":   smtpPassword,
		"TURN secret":     "signalingtest-turn-secret",
		"TURN credential": turnUser,
		"signing key":     base64.RawURLEncoding.EncodeToString(keys[0].Private),
		"signing key std": base64.StdEncoding.EncodeToString(keys[0].Private),
		"access token":    tok.AccessToken,
		"refresh token":   tok.RefreshToken,
		"refresh secret":  tok.RefreshToken[strings.Index(tok.RefreshToken, ".")+1:],
		"ticket":          tk.Ticket,
		"resume token":    a.Welcome.ResumeToken,
		"email link":      linkToken,
		"SDP body":        "SECRET-SDP-BODY",
		"room invite":     invite,
	}
	s.Stop()
	for what, secret := range secrets {
		if secret == "" {
			t.Fatalf("test setup: %s is empty", what)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the logs contain the %s", what)
		}
		if strings.Contains(metrics, secret) {
			t.Errorf("/metrics contains the %s", what)
		}
		if what != "access token" && what != "refresh token" && what != "refresh secret" && what != "ticket" && what != "room invite" &&
			strings.Contains(answers.String(), secret) {
			t.Errorf("an HTTP answer contains the %s", what)
		}
	}
	if !strings.Contains(logs.String(), `"level":"DEBUG"`) {
		t.Fatal("the test did not capture debug logs")
	}
}
