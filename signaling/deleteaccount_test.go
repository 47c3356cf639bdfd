package signaling_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/pquerna/otp/totp"
)

// TestDeleteAccount: a user deletes their own account with the password:
// the sessions of every sign-in end with the reason, the tokens are dead,
// the room it owned is released, and the name can be registered again,
// by someone who inherits nothing. A wrong password, or no access token,
// changes nothing.
func TestDeleteAccount(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	first := s.User(t, "rita")
	second := s.Login(t, "rita", password)
	live := []*signalingtest.Client{s.Connect(t, first.AccessToken, nil), s.Connect(t, second.AccessToken, nil)}
	bearer := []string{"Authorization", "Bearer " + first.AccessToken}
	if c, b, _ := call(t, s, "PUT", "/api/rooms/lab", first.AccessToken, roomReq{MaxMembers: 4}); c != 201 {
		t.Fatalf("claim lab: %d %s", c, b)
	}

	if c, _ := s.Post(t, "/api/account/delete", map[string]string{"password": password}); c != 401 {
		t.Errorf("delete without an access token: %d, want 401", c)
	}
	if c, _ := s.Post(t, "/api/account/delete", map[string]string{"password": "not the password"}, bearer...); c != 401 {
		t.Errorf("delete with a wrong password: %d, want 401", c)
	}
	s.Login(t, "rita", password) // still there

	if c, b := s.Post(t, "/api/account/delete", map[string]string{"password": password}, bearer...); c != 204 {
		t.Fatalf("delete: %d %s", c, b)
	}
	for i, c := range live {
		if e := c.ExpectError(proto.CodeRevoked, ""); !strings.Contains(e.Message, "deleted") {
			t.Errorf("session %d ended with %q", i, e.Message)
		}
	}
	for _, tok := range []signalingtest.Tokens{first, second} {
		if c, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": tok.RefreshToken}); c != 401 {
			t.Errorf("a refresh token of the deleted account: %d, want 401", c)
		}
	}
	if c, _ := s.Post(t, "/api/login", map[string]string{"username": "rita", "password": password}); c != 401 {
		t.Errorf("login to the deleted account: %d, want 401", c)
	}

	// The name is free; the new rita owns nothing of the old one's.
	again := s.User(t, "rita")
	if c, b, _ := call(t, s, "GET", "/api/rooms/lab", again.AccessToken, nil); c != 404 {
		t.Errorf("the deleted account's room: %d %s, want 404 (no owner)", c, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), signalingtest.Timeout)
	defer cancel()
	if ws, resp, err := s.DialWS(ctx, first.AccessToken, nil); err == nil {
		ws.Close()
		t.Error("the old account's access token opens a session of the new rita")
	} else if resp == nil || resp.StatusCode != 401 {
		t.Errorf("the old account's access token: %v %v, want 401", resp, err)
	}
}

// TestDeleteAccountStoreDown: a deletion that the store cannot make
// answers 503 and changes nothing: the session stays, the refresh token
// works, and the same request tried again deletes the account. (It once
// revoked every sign-in first, in a step of its own, so that the 503's
// "nothing was changed" was false and the retry was refused 401.)
func TestDeleteAccountStoreDown(t *testing.T) {
	st := &flakyUsers{Backend: openBolt(t)}
	s := signalingtest.Start(t, signalingtest.Options{Store: st})
	tok := s.User(t, "tess")
	live := s.Connect(t, tok.AccessToken, nil)
	bearer := []string{"Authorization", "Bearer " + tok.AccessToken}

	st.failDelete.Store(true)
	if c, b := s.Post(t, "/api/account/delete", map[string]string{"password": password}, bearer...); c != 503 || !strings.Contains(string(b), "nothing was changed") {
		t.Fatalf("delete while the store is unreachable: %d %s, want 503 nothing was changed", c, b)
	}
	next := refresh(t, s, tok.RefreshToken, 200)
	if c, b := s.Post(t, "/api/account/delete", map[string]string{"password": password}, bearer...); c != 204 {
		t.Fatalf("the same delete tried again: %d %s, want 204", c, b)
	}
	// The session ends with the account, and so does the refresh family
	// that rotated in between.
	if e := live.ExpectError(proto.CodeRevoked, ""); !strings.Contains(e.Message, "deleted") {
		t.Errorf("the session ended with %q", e.Message)
	}
	if c, _ := s.Post(t, "/api/refresh", map[string]string{"refresh_token": next.RefreshToken}); c != 401 {
		t.Errorf("the rotated refresh token after the delete: %d, want 401", c)
	}
}

// TestDeleteAccountNeedsTheSecondFactor: with two-factor authentication on,
// deleting takes a code as well (401 totp_required without one, 401
// totp_invalid with a wrong one, the account staying); a recovery code does.
func TestDeleteAccountNeedsTheSecondFactor(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	tok := s.User(t, "sam")
	bearer := []string{"Authorization", "Bearer " + tok.AccessToken}
	_, body := s.Post(t, "/api/totp/enroll", "", bearer...)
	var e struct{ Secret string }
	json.Unmarshal(body, &e)
	code, _ := totp.GenerateCode(e.Secret, time.Now())
	c, body := s.Post(t, "/api/totp/confirm", map[string]string{"password": password, "code": code}, bearer...)
	var rc struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	if c != 200 || json.Unmarshal(body, &rc) != nil || len(rc.RecoveryCodes) == 0 {
		t.Fatalf("turning 2FA on: %d %s", c, body)
	}
	for _, tc := range []struct{ code, want string }{{"", "totp_required"}, {"000000", "totp_invalid"}} {
		c, b := s.Post(t, "/api/account/delete", map[string]string{"password": password, "code": tc.code}, bearer...)
		if c != 401 || !strings.Contains(string(b), tc.want) {
			t.Errorf("delete with code %q: %d %s, want 401 %s", tc.code, c, b, tc.want)
		}
	}
	if c, b := s.Post(t, "/api/account/delete", map[string]string{"password": password, "code": rc.RecoveryCodes[0]}, bearer...); c != 204 {
		t.Fatalf("delete with a recovery code: %d %s", c, b)
	}
	if c, _ := s.Post(t, "/api/login", map[string]string{"username": "sam", "password": password, "code": rc.RecoveryCodes[1]}); c != 401 {
		t.Errorf("login to the deleted account: %d, want 401", c)
	}
}
