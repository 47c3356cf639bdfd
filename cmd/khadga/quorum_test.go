package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestNATSQuorum runs two `khadga serve --nats` nodes, with their accounts
// in JetStream KV replicated three times, on a cluster of three NATS
// servers. Node 1 is connected to server 0 (and finds the others through
// it), node 2 to any. With server 0 stopped the service carries on:
// sign-ins work on both nodes and the sockets already open relay signals
// between the nodes. With server 1 stopped too, JetStream has no quorum:
// both nodes report not ready and refuse sign-ins, refreshes and new
// sockets at once with 503 "unavailable" (never a 401 that would sign
// anybody out, never a hang), while the sockets already open still relay
// signals between the nodes (core NATS needs no quorum). When the two
// servers return, everything
// works again without a restart, the refresh token refused meanwhile
// included.
func TestNATSQuorum(t *testing.T) {
	nats := natstest.StartCluster(t, 3)
	common := []string{"KHADGA_NATS_REPLICAS=3", "KHADGA_TURN_LISTEN=off"}
	n1 := startServe(t, t.TempDir(), append(common, "KHADGA_NATS="+nats.Servers[0].ClientURL())...)
	n2 := startServe(t, t.TempDir(), append(common, "KHADGA_NATS="+nats.URLs())...)
	for _, u := range []string{"alice", "bob"} {
		if code, body := post(t, n1.url+"/api/register", `{"username":"`+u+`","password":"`+alicePassword+`"}`); code != 201 {
			t.Fatalf("register %s: %d %s", u, code, body)
		}
	}
	alice := signalingtest.ConnectURL(t, wsURL(n1.url), login(t, n1.url, "alice", alicePassword).Access, nil)
	bob := signalingtest.ConnectURL(t, wsURL(n2.url), login(t, n2.url, "bob", alicePassword).Access, nil)
	alice.Join("lobby")
	bob.Join("lobby")
	relays(t, alice, bob, "before")

	begin := time.Now()
	nats.Stop(0)
	for _, n := range []*process{n1, n2} {
		signsIn(t, n.url)
	}
	relays(t, alice, bob, "one server down")
	t.Logf("one NATS server of three stopped: sign-ins and signals on both nodes within %v", time.Since(begin))
	for _, n := range []*process{n1, n2} {
		if code, body := get(t, n.url+"/readyz"); code != http.StatusOK {
			t.Fatalf("/readyz of %s with two NATS servers of three: %d %s", n.url, code, body)
		}
	}

	tok := login(t, n2.url, "bob", alicePassword) // refreshed while the quorum is gone, and after
	begin = time.Now()
	nats.Stop(1)
	for _, n := range []*process{n1, n2} {
		// The store's own readiness, not only the cluster's: /readyz can
		// say 503 from the cluster's check while the store still takes
		// the failures for a leader election, and a request then waits
		// one out (up to 3 s) before its 503.
		waitStatus(t, n.url+"/readyz", http.StatusServiceUnavailable, 15*time.Second, "store unavailable")
		code, body := get(t, n.url+"/readyz")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "NATS") {
			t.Fatalf("/readyz of %s without a quorum: %d %s; want 503 naming NATS", n.url, code, body)
		}
	}
	t.Logf("quorum lost: both nodes not ready within %v", time.Since(begin))
	relays(t, alice, bob, "no quorum") // open sockets carry on: signals need NATS, not JetStream
	for _, n := range []*process{n1, n2} {
		refused(t, n.url+"/api/login", `{"username":"alice","password":"`+alicePassword+`"}`)
		refused(t, n.url+"/api/refresh", `{"refresh_token":"`+tok.Refresh+`"}`)
		refused(t, n.url+"/api/register", `{"username":"carol","password":"`+alicePassword+`"}`)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, resp, err := signalingtest.DialURL(ctx, wsURL(n.url), tok.Access, nil)
		cancel()
		if err == nil {
			conn.Close()
			t.Fatalf("a new socket at %s without a quorum was accepted", n.url)
		}
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a new socket at %s without a quorum: %v %v; want HTTP 503", n.url, resp, err)
		}
	}

	begin = time.Now()
	nats.Restart(0)
	nats.Restart(1)
	for _, n := range []*process{n1, n2} {
		waitStatus(t, n.url+"/readyz", http.StatusOK, 30*time.Second, "")
		signsIn(t, n.url)
	}
	t.Logf("quorum back: both nodes ready and signing in within %v", time.Since(begin))
	refreshAt(t, n1.url, tok.Refresh, http.StatusOK) // the refusals changed nothing
	// New sockets, each user on the other node this time.
	aliceTok, bobTok := login(t, n2.url, "alice", alicePassword).Access, login(t, n1.url, "bob", alicePassword).Access
	opensSockets(t, n2.url, aliceTok)
	opensSockets(t, n1.url, bobTok)
	alice2 := signalingtest.ConnectURL(t, wsURL(n2.url), aliceTok, nil)
	bob2 := signalingtest.ConnectURL(t, wsURL(n1.url), bobTok, nil)
	alice2.Join("after")
	bob2.Join("after")
	relays(t, alice2, bob2, "after")
	n1.stop(t)
	n2.stop(t)
}

// signsIn waits (15 s at most) until alice signs in at url. Until then
// every attempt must be a success or a 503 "unavailable": a node that is
// failing over to another NATS server may ask the client to retry, but
// never refuses the password or fails otherwise.
func signsIn(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := post(t, url+"/api/login", `{"username":"alice","password":"`+alicePassword+`"}`)
		switch {
		case code == http.StatusOK:
			return
		case code != http.StatusServiceUnavailable || apiCode(body) != "unavailable":
			t.Fatalf("login at %s while NATS fails over: %d %s", url, code, body)
		case time.Now().After(deadline):
			t.Fatalf("login at %s still %d after 15 s: %s", url, code, body)
		}
		time.Sleep(100 * time.Millisecond) // the client's retry, as Retry-After asks
	}
}

// opensSockets waits until url takes a WebSocket with access, as a client
// that retries on 503 does: after a quorum returns, JetStream elects each
// bucket's leader in turn, and the socket's account check may read one
// that signsIn's login did not.
func opensSockets(t *testing.T, url, access string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, resp, err := signalingtest.DialURL(ctx, wsURL(url), access, nil)
		cancel()
		switch {
		case err == nil:
			conn.Close()
			return
		case resp == nil || resp.StatusCode != http.StatusServiceUnavailable:
			t.Fatalf("a socket at %s after the quorum came back: %v", url, err)
		case time.Now().After(deadline):
			t.Fatalf("a socket at %s still refused with 503 after 15 s", url)
		}
		time.Sleep(100 * time.Millisecond) // the client's retry
	}
}

// refused checks that url answers body at once with 503 "unavailable",
// the message saying that the store cannot be reached, and Retry-After.
func refused(t *testing.T, url, body string) {
	t.Helper()
	start := time.Now()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("%s without a quorum took %v; want a refusal at once", url, took)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || e.Error.Code != "unavailable" ||
		!strings.Contains(e.Error.Message, "cannot be reached") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%s without a quorum: %d %+v (Retry-After %q); want 503 unavailable", url, resp.StatusCode, e.Error,
			resp.Header.Get("Retry-After"))
	}
}

// relays sends signals from a to b (on different nodes) until one is
// delivered, within 15 s: a signal that cannot be delivered while a node
// fails over gets an error back, never silence.
func relays(t *testing.T, a, b *signalingtest.Client, when string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", strings.ReplaceAll(when, " ", "-"), i)
		a.Send(&proto.Message{Type: proto.TypeSignal, ID: id, To: b.Welcome.Peer, Data: json.RawMessage(`{"n":1}`)})
		m := fate(t, a, b, id)
		if m.Type == proto.TypeSignal {
			if m.From != a.Welcome.Peer {
				t.Fatalf("%s: signal from %q, want %q", when, m.From, a.Welcome.Peer)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no signal delivered in 15 s; the last error: %s", when, m.Data)
		}
		time.Sleep(100 * time.Millisecond) // the sender's retry
	}
}

// fate waits (10 s at most: more than the cluster's AckWait) for the
// signal id that a sent to b: b's signal message, or a's error naming id.
// Signals get no ack.
func fate(t *testing.T, a, b *signalingtest.Client, id string) *proto.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m, ok := b.NextWithin(20 * time.Millisecond); ok && m.Type == proto.TypeSignal {
			return m
		}
		if m, ok := a.NextWithin(20 * time.Millisecond); ok && m.Type == proto.TypeError && m.Ref == id {
			return m
		}
	}
	t.Fatalf("signal %s: neither delivered nor refused in 10 s", id)
	return nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus polls url until it answers want, for at most d.
// waitStatus polls url until it answers want, with a body that contains
// substring.
func waitStatus(t *testing.T, url string, want int, d time.Duration, substring string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, body := get(t, url)
		if code == want && strings.Contains(body, substring) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %d %s after %v; want %d", url, code, body, d, want)
		}
		time.Sleep(100 * time.Millisecond) // polling under a deadline, as a load balancer does
	}
}

// apiCode is the code of an API error body.
func apiCode(body string) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}
