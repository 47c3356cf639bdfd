package hub

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/khadga/khadga/proto"
)

// TestResumeTakesTheNewLogin: a resume takes the Login and KeyID of the
// token that authenticated the resuming connection, not those of the
// token that opened the session, so that signing out that sign-in
// (CloseLogin) or retiring that key (Revoke by KeyID) reaches the live
// connection it authenticated; MoveLogin (a password change) moves a
// sign-in's sessions to another.
func TestResumeTakesTheNewLogin(t *testing.T) {
	base := newTestServer(t, Config{})
	h := base.hub
	up := websocket.Upgrader{Subprotocols: proto.Subprotocols, CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		q := r.URL.Query()
		id := Identity{User: q.Get("user"), Role: proto.RoleUser, Login: q.Get("login"), KeyID: q.Get("key")}
		_ = h.Accept(ws.NetConn(), id, ConnOptions{ResumeToken: q.Get("resume")})
	}))
	t.Cleanup(srv.Close)
	ts := &testServer{t: t, hub: h, srv: srv}

	old := ts.dial("user=alice&login=L1&key=K1")
	_ = old.ws.NetConn().Close()
	eventually(t, "the old socket to be gone", func() bool { n, _ := h.UserConns("alice"); return n == 0 })

	// alice signed in again (sign-in L2, a token signed with key K2) and
	// her client resumes its session with that token.
	cur := ts.dial("user=alice&login=L2&key=K2&resume=" + old.welcome.ResumeToken)
	if !cur.welcome.Resumed {
		t.Fatal("resume failed")
	}
	var login, key string
	h.Revoke(func(id Identity) bool { // a match that ends nothing: a look
		if id.User == "alice" {
			login, key = id.Login, id.KeyID
		}
		return false
	}, proto.CodeRevoked, "")
	if login != "L2" || key != "K2" {
		t.Fatalf("after the resume the session's sign-in is %q and key %q, want L2 and K2", login, key)
	}
	if n := h.MoveLogin("alice", "L2", "L3"); n != 1 {
		t.Fatalf("MoveLogin moved %d sessions, want 1", n)
	}
	if n := h.CloseLogin("alice", "L2", proto.CodeRevoked, "signed out"); n != 0 {
		t.Errorf("signing out L2, moved to L3, ended %d sessions", n)
	}
	if n := h.CloseLogin("alice", "L3", proto.CodeRevoked, "signed out"); n != 1 {
		t.Errorf("signing out L3 ended %d sessions; the connection stays open", n)
	}
	if code := cur.expectClose(); code != proto.CloseRevoked {
		t.Fatalf("closed with %d, want %d", code, proto.CloseRevoked)
	}
}
