package main

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestRefreshRaceAcrossNodes presents one refresh token to two `khadga
// serve --nats` nodes at the same moment, several times: exactly one
// succeeds each time (the rotation is one compare-and-swap on the
// account's record in JetStream KV), and the other is the reuse the rule
// punishes, so the sign-in ends on every node. Then the plain reuse: a
// rotated-away token replayed on the other node revokes the family there
// and here, and ends its session on the node that holds it.
func TestRefreshRaceAcrossNodes(t *testing.T) {
	nats := natstest.Start(t).ClientURL()
	env := []string{"KHADGA_NATS=" + nats, "KHADGA_TURN_LISTEN=off"}
	nodes := []*process{startServe(t, t.TempDir(), env...), startServe(t, t.TempDir(), env...)}
	n1, n2 := nodes[0], nodes[1]
	if code, body := post(t, n1.url+"/api/register", `{"username":"alice","password":"`+alicePassword+`"}`); code != 201 {
		t.Fatalf("register: %d %s", code, body)
	}

	for i := range 4 {
		tok := login(t, nodes[i%2].url, "alice", alicePassword)
		ws := signalingtest.ConnectURL(t, wsURL(n2.url), tok.Access, nil) // this sign-in's session, on node 2
		start := make(chan struct{})
		codes, errs := make(chan int, 2), make(chan error, 2)
		for _, n := range nodes {
			go func() {
				<-start
				code, _, err := tryPost(n.url+"/api/refresh", `{"refresh_token":"`+tok.Refresh+`"}`)
				codes <- code
				errs <- err
			}()
		}
		close(start)
		got := []int{<-codes, <-codes}
		if err := errors.Join(<-errs, <-errs); err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, []int{http.StatusOK, http.StatusUnauthorized}) {
			t.Fatalf("race %d: the two nodes answered %v; want exactly one 200 and one 401", i, got)
		}
		// The loser found its token rotated away: reuse. The family is
		// revoked for every node, and its session ended.
		if code := ticketStatus(t, n1.url, tok.Access); code != http.StatusUnauthorized {
			t.Fatalf("race %d: the sign-in's access token after the reuse: %d, want 401", i, code)
		}
		if code := signalingtest.CloseCode(ws.Closed()); code != proto.CloseRevoked {
			t.Fatalf("race %d: the sign-in's session on node 2 closed with %d, want %d", i, code, proto.CloseRevoked)
		}
	}

	for _, n := range nodes { // how often the two writes did meet (a few races may not)
		t.Logf("%s: %s", n.url, metricLines(t, n.url, `khadga_kv_conflicts_total{op="rotate_family"}`))
	}

	// Reuse after a rotation: the token rotated away on node 1, replayed
	// on node 2.
	t0 := login(t, n1.url, "alice", alicePassword)
	t1 := refreshAt(t, n1.url, t0.Refresh, http.StatusOK)
	ws := signalingtest.ConnectURL(t, wsURL(n1.url), t1.Access, nil)
	refreshAt(t, n2.url, t0.Refresh, http.StatusUnauthorized)
	if code := signalingtest.CloseCode(ws.Closed()); code != proto.CloseRevoked {
		t.Fatalf("the session on node 1 after the reuse on node 2 closed with %d, want %d", code, proto.CloseRevoked)
	}
	for _, n := range nodes {
		refreshAt(t, n.url, t1.Refresh, http.StatusUnauthorized)
		if code := ticketStatus(t, n.url, t1.Access); code != http.StatusUnauthorized {
			t.Fatalf("the revoked sign-in's access token at %s: %d, want 401", n.url, code)
		}
	}
	bearerOK(t, n2.url, login(t, n2.url, "alice", alicePassword).Access) // a new sign-in works
	for _, n := range nodes {
		n.stop(t)
	}
}

// wsURL is the WebSocket endpoint of the server at base (http://...).
func wsURL(base string) string { return strings.Replace(base, "http", "ws", 1) + "/ws" }

// ticketStatus asks url for a WebSocket ticket with access and returns
// the status: 200 when the token verifies there and its sign-in is alive.
func ticketStatus(t *testing.T, url, access string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/api/ws-ticket", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metricLines returns the lines of url's /metrics that start with prefix.
func metricLines(t *testing.T, url, prefix string) []string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}
