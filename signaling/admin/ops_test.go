package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/auth"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store"
)

const pw = "correct horse battery"

func dialAdmin(t *testing.T, s *signalingtest.Server) *admin.Client {
	t.Helper()
	a, err := admin.Dial(filepath.Join(s.DataDir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// ended waits for c's session to end for good: error "revoked", then
// close code 4001, both with reason.
func ended(t *testing.T, c *signalingtest.Client, reason string) {
	t.Helper()
	e := c.ExpectError(proto.CodeRevoked, "")
	err := c.Closed()
	if code := signalingtest.CloseCode(err); code != proto.CloseRevoked || !strings.Contains(e.Message, reason) {
		t.Fatalf("close %d (%v), error %q; want %d with %q", code, err, e.Message, proto.CloseRevoked, reason)
	}
}

// opens reports whether access opens a WebSocket (101) rather than 401.
func opens(t *testing.T, s *signalingtest.Server, access string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), signalingtest.Timeout)
	defer cancel()
	ws, resp, err := s.DialWS(ctx, access, nil)
	if err == nil {
		ws.Close()
		return true
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial: %v (%v), want 101 or 401", err, resp)
	}
	return false
}

// TestSetPassword: `khadga user passwd` sets the password and ends the
// user's sign-ins, live sessions included, over the admin socket; a bad
// password or an unknown user changes nothing.
func TestSetPassword(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	a := dialAdmin(t, s)
	ctx := context.Background()
	tok := s.User(t, "dana")
	live := s.Connect(t, tok.AccessToken, nil)

	if err := a.SetPassword(ctx, "dana", "short"); !errors.Is(err, admin.ErrBadRequest) {
		t.Fatalf("a short password: %v, want ErrBadRequest", err)
	}
	if err := a.SetPassword(ctx, "nobody", "a long new password"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown user: %v, want ErrNotFound", err)
	}
	if !opens(t, s, tok.AccessToken) {
		t.Fatal("a refused change signed dana out")
	}
	if err := a.SetPassword(ctx, "dana", "a long new password"); err != nil {
		t.Fatal(err)
	}
	ended(t, live, admin.ReasonPassword)
	if opens(t, s, tok.AccessToken) {
		t.Error("the access token of the old sign-in still opens a connection")
	}
	if code, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": tok.RefreshToken}); code != http.StatusUnauthorized {
		t.Errorf("the old refresh token: %d, want 401", code)
	}
	if code, _ := s.Post(t, "/api/login", map[string]string{"username": "dana", "password": pw}); code != http.StatusUnauthorized {
		t.Errorf("the old password: %d, want 401", code)
	}
	s.Login(t, "dana", "a long new password")
}

// TestDisableEnable: disabling ends the user's live sessions and refuses
// sign-in; enabling lets the user sign in again.
func TestDisableEnable(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	a := dialAdmin(t, s)
	ctx := context.Background()
	live := s.Connect(t, s.User(t, "eli").AccessToken, nil)
	if err := a.SetDisabled(ctx, "eli", true); err != nil {
		t.Fatal(err)
	}
	ended(t, live, admin.ReasonDisabled)
	creds := map[string]string{"username": "eli", "password": pw}
	if code, _ := s.Post(t, "/api/login", creds); code != http.StatusUnauthorized {
		t.Fatalf("login while disabled: %d", code)
	}
	if err := a.SetDisabled(ctx, "eli", false); err != nil {
		t.Fatal(err)
	}
	if !opens(t, s, s.Login(t, "eli", pw).AccessToken) {
		t.Fatal("an enabled user cannot connect")
	}
	if err := a.SetDisabled(ctx, "nobody", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("disable unknown: %v", err)
	}
}

// TestBotTokens: `khadga token` records what it mints; `token list` shows
// it, and `token revoke` refuses the token and the access tokens a
// refresh token bought, and ends their sessions, leaving the bot's other
// tokens alone.
func TestBotTokens(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	a := dialAdmin(t, s)
	ctx := context.Background()
	acc, err := a.MintToken(ctx, admin.TokenRequest{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"lab"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := a.MintToken(ctx, admin.TokenRequest{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"lab"}, Refresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if !auth.IsBotRefresh(ref.Token) || auth.IsBotRefresh(acc.Token) || strings.Count(acc.Token, ".") != 2 {
		t.Fatalf("tokens of the wrong shape: %q %q", acc.Token, ref.Token)
	}
	if d := time.Until(ref.Expires); d < admin.DefaultRefreshTTL-time.Minute || d > admin.DefaultRefreshTTL {
		t.Errorf("a refresh token with no ttl expires in %v, want %v", d, admin.DefaultRefreshTTL)
	}
	for _, bad := range []admin.TokenRequest{
		{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"lab"}, TTL: admin.MaxTokenTTL + time.Hour},
		{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"lab"}, TTL: admin.MaxRefreshTTL + time.Hour, Refresh: true},
		{User: "rec", Role: "root", Rooms: []string{"lab"}},
	} {
		if _, err := a.MintToken(ctx, bad); !errors.Is(err, admin.ErrBadRequest) {
			t.Errorf("%+v: %v, want ErrBadRequest", bad, err)
		}
	}

	// The refresh token buys short access tokens, again and again.
	buy := func() signalingtest.Tokens {
		t.Helper()
		code, body := s.Post(t, "/api/refresh", map[string]string{"refresh_token": ref.Token})
		var tok signalingtest.Tokens
		if code != http.StatusOK || json.Unmarshal(body, &tok) != nil {
			t.Fatalf("refresh with the bot token: %d %s", code, body)
		}
		if tok.RefreshToken != ref.Token || tok.ExpiresIn > int((15*time.Minute).Seconds()) {
			t.Fatalf("refresh answer %+v: want the same refresh token and a short access token", tok)
		}
		return tok
	}
	first, second := buy(), buy()
	byRefresh := s.Connect(t, second.AccessToken, nil)
	byAccess := s.Connect(t, acc.Token, nil)
	if byRefresh.Welcome.Role != proto.RoleRecorder || byRefresh.Welcome.User != "rec" {
		t.Fatalf("welcome %+v", byRefresh.Welcome)
	}
	list, err := a.ListTokens(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	kinds := map[string]admin.TokenInfo{}
	for _, ti := range list {
		kinds[ti.Kind] = ti
	}
	if kinds[store.BotAccess].ID != acc.ID || kinds[store.BotRefresh].ID != ref.ID || kinds[store.BotRefresh].LastUsed.IsZero() ||
		kinds[store.BotAccess].Rooms[0] != "lab" {
		t.Fatalf("list: %+v", list)
	}

	if err := a.RevokeToken(ctx, ref.ID); err != nil {
		t.Fatal(err)
	}
	ended(t, byRefresh, admin.ReasonTokenRevoked)
	if code, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": ref.Token}); code != http.StatusUnauthorized {
		t.Errorf("the revoked refresh token still buys tokens: %d", code)
	}
	if opens(t, s, first.AccessToken) {
		t.Error("an access token bought before the revocation still opens a connection")
	}
	if !opens(t, s, acc.Token) {
		t.Error("revoking one bot token refused the other")
	}
	byAccess.Join("lab") // its session goes on
	if err := a.RevokeToken(ctx, "no-such-token"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
	if list, _ := a.ListTokens(ctx); len(list) != 2 || list[0].Revoked.IsZero() == list[1].Revoked.IsZero() {
		t.Errorf("after revoking one: %+v", list)
	}
	wrong := ref.Token[:len(ref.Token)-4] + "AAAA"
	if code, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": wrong}); code != http.StatusUnauthorized {
		t.Errorf("a forged bot refresh token: %d", code)
	}
}

// clock is a settable clock for the server's tokens.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// TestKeyRotation: `khadga keys rotate` signs with a new key; the old one
// keeps verifying, and the sessions it opened stay, until every token it
// signed has expired (the longest bot token's expiry), then it stops.
func TestKeyRotation(t *testing.T) {
	var clk clock
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{Now: clk.now}})
	a := dialAdmin(t, s)
	ctx := context.Background()
	old := s.Keys().SigningKID()
	tok := s.User(t, "kim")
	live := s.Connect(t, tok.AccessToken, nil)
	bot, err := a.MintToken(ctx, admin.TokenRequest{User: "cam", Role: proto.RoleUser, TTL: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// A long token nobody recorded (as bot tokens were before schema 2)
	// shows when the old key stops: it outlives the key.
	stray, _, err := s.Keys().IssueAccess(auth.Claims{User: "cam", Role: proto.RoleUser}, 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	kid, err := a.RotateKey(ctx)
	if err != nil || kid == old || s.Keys().SigningKID() != kid {
		t.Fatalf("rotate: %q %v (old %q)", kid, err, old)
	}
	keys, err := a.ListKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys: %+v %v", keys, err)
	}
	want := bot.Expires.Add(auth.DefaultLeeway)
	if keys[0].ID != old || keys[0].Signing || keys[0].RetireAt.Before(want.Add(-time.Second)) || keys[0].RetireAt.After(want.Add(time.Second)) ||
		keys[1].ID != kid || !keys[1].Signing {
		t.Fatalf("keys %+v: want %s verifying until %v, %s signing", keys, old, want, kid)
	}
	if !opens(t, s, tok.AccessToken) || !opens(t, s, bot.Token) {
		t.Fatal("a token of the old key was refused right after the rotation")
	}
	fresh := s.Login(t, "kim", pw)
	if c, err := s.Keys().VerifyAccess(fresh.AccessToken); err != nil || c.Key != kid {
		t.Fatalf("a new sign-in's token has kid %q (%v), want %q", c.Key, err, kid)
	}
	live.Join("lobby") // the rotation ended nobody's session

	clk.advance(47 * time.Hour)
	if !opens(t, s, bot.Token) {
		t.Fatal("the old key stopped before its bot token expired")
	}
	if retired, err := s.Keys().RetireDue(); err != nil || len(retired) != 0 {
		t.Fatalf("retired early: %v %v", retired, err)
	}
	clk.advance(time.Hour + auth.DefaultLeeway + time.Second)
	if opens(t, s, stray) {
		t.Fatal("the old key still verifies after every token it was known to sign expired")
	}
	if retired, err := s.Keys().RetireDue(); err != nil || len(retired) != 1 || retired[0] != old {
		t.Fatalf("RetireDue = %v, %v; want [%s]", retired, err, old)
	}
	if keys, _ := a.ListKeys(ctx); !keys[0].Retired {
		t.Fatalf("after RetireDue: %+v", keys)
	}
	if !opens(t, s, s.Login(t, "kim", pw).AccessToken) {
		t.Fatal("the new key does not verify")
	}
}

// TestRetireKey: `khadga keys retire` stops a leaked key at once and ends
// its sessions; the signing key cannot be retired.
func TestRetireKey(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	a := dialAdmin(t, s)
	ctx := context.Background()
	old := s.Keys().SigningKID()
	tok := s.User(t, "lee")
	live := s.Connect(t, tok.AccessToken, nil)
	if err := a.RetireKey(ctx, old); !errors.Is(err, admin.ErrBadRequest) {
		t.Fatalf("retiring the signing key: %v, want ErrBadRequest", err)
	}
	if _, err := a.RotateKey(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.RetireKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	ended(t, live, "retired the key")
	if opens(t, s, tok.AccessToken) {
		t.Fatal("a token of the retired key still opens a connection")
	}
	if err := a.RetireKey(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("retire unknown: %v", err)
	}
}

// TestBotNamesAreHeld: minting a bot token holds the bot's name, so that
// nobody registers it and passes for the bot or uses up its connections;
// the held name never signs in, takes no password or role, and is not
// deleted while a token of it works. Minting for an account's name takes
// --share-account; deleting that account leaves the name held.
func TestBotNamesAreHeld(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	a := dialAdmin(t, s)
	ctx := context.Background()
	acc, err := a.MintToken(ctx, admin.TokenRequest{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"lab"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	code, body := s.Post(t, "/api/register", map[string]string{"username": "rec", "password": pw})
	if code != http.StatusConflict || !strings.Contains(string(body), "taken") {
		t.Fatalf("registering a bot's name: %d %s, want 409 taken", code, body)
	}
	if code, _ := s.Post(t, "/api/login", map[string]string{"username": "rec", "password": ""}); code != http.StatusUnauthorized {
		t.Errorf("login as a bot's name with no password: %d, want 401", code)
	}
	if err := a.AddUser(ctx, "rec", pw, proto.RoleUser); !errors.Is(err, store.ErrUserExists) || !strings.Contains(err.Error(), "bot's name") {
		t.Errorf("user add of a bot's name: %v, want ErrUserExists naming the bot", err)
	}
	if err := a.SetPassword(ctx, "rec", pw); !errors.Is(err, admin.ErrBadRequest) {
		t.Errorf("user passwd of a bot's name: %v, want ErrBadRequest", err)
	}
	if err := a.SetRole(ctx, "rec", proto.RoleAdmin); !errors.Is(err, admin.ErrBadRequest) {
		t.Errorf("user role of a bot's name: %v, want ErrBadRequest", err)
	}
	us, err := a.ListUsers(ctx)
	if err != nil || len(us) != 1 || us[0].Name != "rec" || !us[0].Bot {
		t.Fatalf("user list: %+v %v, want rec as a bot's name", us, err)
	}
	if c := s.Connect(t, acc.Token, nil); c.Welcome.User != "rec" || c.Welcome.Role != proto.RoleRecorder {
		t.Fatalf("the bot's welcome: %+v", c.Welcome)
	}

	// While a token of it works, the held name is not deleted: it would
	// be free for anyone to pass for the bot.
	if err := a.DeleteUser(ctx, "rec"); !errors.Is(err, admin.ErrBadRequest) || !strings.Contains(err.Error(), "revoke them first") {
		t.Errorf("deleting a held name with a live token: %v, want ErrBadRequest", err)
	}
	if err := a.RevokeToken(ctx, acc.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteUser(ctx, "rec"); err != nil {
		t.Errorf("deleting the held name once its tokens are revoked: %v", err)
	}

	// An account first (someone registered the name the bot was meant to
	// have): minting for it is refused, unless the admin means the bot to
	// share it; the account signs in as ever.
	s.User(t, "ann")
	if _, err := a.MintToken(ctx, admin.TokenRequest{User: "ann", Role: proto.RoleUser, TTL: time.Hour}); !errors.Is(err, admin.ErrBadRequest) || !strings.Contains(err.Error(), "--share-account") {
		t.Fatalf("minting for an account's name: %v, want ErrBadRequest naming --share-account", err)
	}
	if _, err := a.MintToken(ctx, admin.TokenRequest{User: "ann", Role: proto.RoleUser, TTL: time.Hour, ShareAccount: true}); err != nil {
		t.Fatal(err)
	}
	s.Login(t, "ann", pw)
	// Deleting the account leaves the name held for the bot's live token.
	if err := a.DeleteUser(ctx, "ann"); err != nil {
		t.Fatal(err)
	}
	if code, _ := s.Post(t, "/api/register", map[string]string{"username": "ann", "password": pw}); code != http.StatusConflict {
		t.Errorf("registering the name of a deleted account that a live bot token shares: %d, want 409", code)
	}
}
