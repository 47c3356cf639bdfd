package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/khadga/khadga/internal/metricstest"
	"github.com/khadga/khadga/internal/testlog"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/turn"
)

const testPassword = "correct horse battery"

// testServer is a real signaling server, optionally with an embedded TURN
// server, whose logs are kept so that tests can check what passed through.
type testServer struct {
	*signalingtest.Server
	logs *testlog.Buffer
	turn *turn.Server
	reg  *prometheus.Registry
}

func startServer(t *testing.T, withTURN bool) *testServer {
	t.Helper()
	ts := &testServer{logs: &testlog.Buffer{}}
	log := slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts.Server = startQuiet(t, withTURN, log, ts)
	return ts
}

// startQuiet starts the signaling server (and TURN if asked) logging to log.
func startQuiet(t testing.TB, withTURN bool, log *slog.Logger, ts *testServer) *signalingtest.Server {
	t.Helper()
	ts.reg = prometheus.NewRegistry()
	var cfg signaling.Config
	cfg.Logger = log
	if withTURN {
		ts.turn = startTURN(t, ts.reg, log)
		cfg.ICEServers = ts.turn.ICEServers
	}
	return signalingtest.Start(t, signalingtest.Options{Config: cfg})
}

func startTURN(t testing.TB, reg prometheus.Registerer, log *slog.Logger) *turn.Server {
	t.Helper()
	cfg := turn.Config{
		Realm:   "khadga.test",
		Secrets: [][]byte{[]byte("client-test-secret")},
		// Both relays are on 127.0.0.1; allow loopback peers for tests.
		AllowPeers: []string{"127.0.0.1/32"},
		Logger:     log,
		Registerer: reg,
	}
	if _, ok := t.(*testing.B); ok {
		// Benchmarks measure the client and the relay path, not the
		// operator's cap (tests keep the default, as users get it).
		cfg.UserBandwidth = -1
	}
	return signalingtest.StartTURN(t, cfg)
}

// newClient registers user and dials the server as that user.
func (ts *testServer) newClient(t *testing.T, user string, opts ...Option) *Client {
	t.Helper()
	ts.Register(t, user, testPassword)
	return ts.dial(t, user, opts...)
}

func (ts *testServer) dial(t *testing.T, user string, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	base := []Option{WithLogger(testLogger(t).With(slog.String("client", user))), WithSettingEngine(loopbackEngine()),
		WithReconnectBackoff(50*1e6, 1e9)}
	c, err := Dial(ctx, ts.URL, Credentials{Username: user, Password: testPassword}, append(base, opts...)...)
	if err != nil {
		t.Fatalf("dial as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func join(t *testing.T, c *Client, room string) *Room {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r, err := c.Join(ctx, room)
	if err != nil {
		t.Fatalf("%s joins %s: %v", c.Self().User, room, err)
	}
	return r
}

// aliceAndBob registers alice and bob, has both join room, and returns
// once each has a peer connection to the other.
func (ts *testServer) aliceAndBob(t *testing.T, room string) (alice, bob *Client, ra, rb *Room) {
	t.Helper()
	alice, bob = ts.newClient(t, "alice"), ts.newClient(t, "bob")
	ra, rb = join(t, alice, room), join(t, bob, room)
	connected(t, ra, "bob")
	connected(t, rb, "alice")
	return alice, bob, ra, rb
}

// connected waits until r reports a PeerConnected for each user.
func connected(t *testing.T, r *Room, users ...string) map[string]proto.Member {
	t.Helper()
	got := map[string]proto.Member{}
	for len(got) < len(users) {
		ev := waitEvent[*PeerConnected](t, r.events, func(e *PeerConnected) bool {
			for _, u := range users {
				if e.Member.User == u {
					return true
				}
			}
			return false
		})
		got[ev.Member.User] = ev.Member
	}
	return got
}

func TestE2EChatBothWaysPeerToPeer(t *testing.T) {
	ts := startServer(t, false)
	alice, bob := ts.newClient(t, "alice"), ts.newClient(t, "bob")
	ra := join(t, alice, "lobby")
	rb := join(t, bob, "lobby")
	connected(t, ra, "bob")
	connected(t, rb, "alice")

	secret1, secret2 := "p2p-marker-4f9c1e", "p2p-marker-77ab02"
	if n, err := ra.Send(secret1); err != nil || n != 1 {
		t.Fatalf("alice send: %d, %v", n, err)
	}
	if m := waitEvent[*Message](t, rb.events, nil); m.Text != secret1 || m.From.User != "alice" || m.From.Peer != alice.Self().Peer {
		t.Fatalf("bob got %+v", m)
	}
	if n, err := rb.Send(secret2); err != nil || n != 1 {
		t.Fatalf("bob send: %d, %v", n, err)
	}
	if m := waitEvent[*Message](t, ra.events, nil); m.Text != secret2 || m.From.User != "bob" {
		t.Fatalf("alice got %+v", m)
	}
	// The server logged the handshake (at debug level) but never the chat.
	logs := ts.logs.String()
	if !strings.Contains(logs, "alice") {
		t.Fatalf("server logs look empty; the check below would prove nothing:\n%s", logs)
	}
	if strings.Contains(logs, secret1) || strings.Contains(logs, secret2) {
		t.Fatal("a chat message passed through the signaling server")
	}
	info, ok := ra.PeerInfo(bob.Self().Peer)
	if !ok || info.Kind() == "" || info.Relayed() {
		t.Fatalf("alice's connection to bob: %+v", info)
	}
}

// TestE2EChatOverTLS: the same chat through a server with in-process TLS
// (wss://, as khadga serve runs with a certificate), the clients trusting
// its certificate through WithHTTPClient, for the API and the WebSocket.
func TestE2EChatOverTLS(t *testing.T) {
	ts := &testServer{logs: &testlog.Buffer{}}
	ts.Server = signalingtest.Start(t, signalingtest.Options{TLS: true})
	if !strings.HasPrefix(ts.WSURL, "wss://") {
		t.Fatalf("server at %s, want wss", ts.WSURL)
	}
	hc := WithHTTPClient(signalingtest.HTTPClient())
	alice, bob := ts.newClient(t, "alice", hc), ts.newClient(t, "bob", hc)
	ra, rb := join(t, alice, "lobby"), join(t, bob, "lobby")
	connected(t, ra, "bob")
	connected(t, rb, "alice")
	if n, err := ra.Send("over tls"); err != nil || n != 1 {
		t.Fatalf("alice send: %d, %v", n, err)
	}
	if m := waitEvent[*Message](t, rb.events, nil); m.Text != "over tls" {
		t.Fatalf("bob got %+v", m)
	}
}

func TestE2EFullMeshOfThree(t *testing.T) {
	ts := startServer(t, false)
	users := []string{"ann", "ben", "cat"}
	rooms := map[string]*Room{}
	for _, u := range users {
		rooms[u] = join(t, ts.newClient(t, u), "mesh")
	}
	for _, u := range users {
		var others []string
		for _, o := range users {
			if o != u {
				others = append(others, o)
			}
		}
		connected(t, rooms[u], others...)
	}
	for _, u := range users {
		if n, err := rooms[u].Send("hi from " + u); err != nil || n != 2 {
			t.Fatalf("%s send: %d, %v", u, n, err)
		}
	}
	for _, u := range users {
		got := map[string]bool{}
		for len(got) < 2 {
			m := waitEvent[*Message](t, rooms[u].events, nil)
			if m.Text != "hi from "+m.From.User || m.From.User == u {
				t.Fatalf("%s got %+v", u, m)
			}
			got[m.From.User] = true
		}
	}
}

func TestE2ESimultaneousNegotiation(t *testing.T) {
	ts := startServer(t, false)
	alice, bob, ra, rb := ts.aliceAndBob(t, "glare")
	pa, _ := ra.peer(bob.Self().Peer)
	pb, _ := rb.peer(alice.Self().Peer)
	// Both sides start a negotiation at the same moment, several times,
	// with ICE restarts in the mix.
	for i := 0; i < 4; i++ {
		restart := i == 2
		pa.enqueue(func() { pa.negotiate(restart) })
		pb.enqueue(func() { pb.negotiate(restart) })
	}
	waitStable(t, pa)
	waitStable(t, pb)
	if _, err := ra.Send("after glare"); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[*Message](t, rb.events, nil); m.Text != "after glare" {
		t.Fatalf("got %q", m.Text)
	}
}

// TestE2EResumeAfterDrop closes a client's WebSocket under it: the client
// resumes with the same peer id, the peer connection survives, and chat
// goes on.
func TestE2EResumeAfterDrop(t *testing.T) {
	ts := startServer(t, false)
	alice, bob, ra, rb := ts.aliceAndBob(t, "resume")
	before := alice.Self().Peer
	pcBefore, _ := rb.peer(before)

	alice.DropConnection()
	waitEvent[*Disconnected](t, alice.events, nil)
	rc := waitEvent[*Reconnected](t, alice.events, nil)
	if !rc.Resumed || rc.Peer != before || alice.Self().Peer != before {
		t.Fatalf("reconnect %+v, peer now %s, was %s", rc, alice.Self().Peer, before)
	}
	if _, err := ra.Send("after resume"); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[*Message](t, rb.events, nil); m.Text != "after resume" {
		t.Fatalf("bob got %q", m.Text)
	}
	if pcAfter, _ := rb.peer(before); pcAfter != pcBefore {
		t.Fatal("bob's peer connection to alice was replaced; it should have survived")
	}
	// Signaling still works after the resume: a renegotiation completes.
	pa, _ := ra.peer(bob.Self().Peer)
	pa.enqueue(func() { pa.negotiate(true) })
	waitStable(t, pa)
	if _, err := rb.Send("and back"); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[*Message](t, ra.events, nil); m.Text != "and back" {
		t.Fatalf("alice got %q", m.Text)
	}
}

func sendFileE2E(t *testing.T, ra, rb *Room, to string, size int) {
	t.Helper()
	data := randomBytes(t, size)
	want := sha256.Sum256(data)
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	defer cancel()
	st, err := ra.SendFile(ctx, to, "payload.bin", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	f := waitEvent[*IncomingFile](t, rb.events, nil)
	h := sha256.New()
	rt, err := f.Accept(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Wait(ctx); err != nil {
		t.Fatalf("receive: %v", err)
	}
	if err := st.Wait(ctx); err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatal("SHA-256 differs")
	}
}

func TestE2EFile20MiB(t *testing.T) {
	ts := startServer(t, false)
	_, bob, ra, rb := ts.aliceAndBob(t, "files")
	sendFileE2E(t, ra, rb, bob.Self().Peer, 20<<20)
}

// TestE2EFileInterrupted closes the sending client mid-transfer.
func TestE2EFileInterrupted(t *testing.T) {
	ts := startServer(t, false)
	alice, bob, ra, rb := ts.aliceAndBob(t, "files")
	data := randomBytes(t, 8<<20)
	g := &gateReader{r: bytes.NewReader(data), n: 2 << 20, reached: make(chan struct{}), release: make(chan struct{})}
	defer close(g.release)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := ra.SendFile(ctx, bob.Self().Peer, "cut.bin", g, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	rt, err := waitEvent[*IncomingFile](t, rb.events, nil).Accept(&bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.reached:
	case <-ctx.Done():
		t.Fatal("sender never reached the gate")
	}
	alice.Close()
	if err := rt.Wait(ctx); !errors.Is(err, ErrTransferInterrupted) {
		t.Fatalf("receiver got %v, want ErrTransferInterrupted", err)
	}
}

// TestE2ERelayOnly forces TURN on both sides: the selected pair is relay,
// chat and a file pass, and the embedded TURN server counted the bytes.
func TestE2ERelayOnly(t *testing.T) {
	ts := startServer(t, true)
	alice := ts.newClient(t, "alice", WithRelayOnly())
	bob := ts.newClient(t, "bob", WithRelayOnly())
	ra, rb := join(t, alice, "relay"), join(t, bob, "relay")
	connected(t, ra, "bob")
	connected(t, rb, "alice")
	info, _ := ra.PeerInfo(bob.Self().Peer)
	if !info.Relayed() || info.Kind() != "relay" {
		t.Fatalf("selected pair %+v, want relay", info)
	}
	if _, err := ra.Send("via turn"); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[*Message](t, rb.events, nil); m.Text != "via turn" {
		t.Fatalf("got %q", m.Text)
	}
	before := relayedBytes(t, ts.reg)
	sendFileE2E(t, ra, rb, bob.Self().Peer, 2<<20)
	if after := relayedBytes(t, ts.reg); after-before < 2<<20 {
		t.Fatalf("TURN relayed %v bytes during a 2 MiB transfer", after-before)
	}

	// A resume brings fresh TURN credentials: the relayed connection
	// restarts ICE onto them (new ICE credentials) and keeps working.
	pa, _ := ra.peer(bob.Self().Peer)
	ufrag := localUfrag(pa)
	alice.DropConnection()
	if rc := waitEvent[*Reconnected](t, alice.events, nil); !rc.Resumed {
		t.Fatalf("reconnect %+v", rc)
	}
	deadline := time.Now().Add(testTimeout)
	for localUfrag(pa) == ufrag {
		if time.Now().After(deadline) {
			t.Fatal("no ICE restart after the resume on a relayed connection")
		}
		time.Sleep(20 * time.Millisecond) // polling a description, not synchronising
	}
	waitStable(t, pa)
	if _, err := ra.Send("still via turn"); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[*Message](t, rb.events, nil); m.Text != "still via turn" {
		t.Fatalf("got %q", m.Text)
	}
	if info, _ := ra.PeerInfo(bob.Self().Peer); !info.Relayed() {
		t.Fatalf("after the restart the pair is %+v, want relay", info)
	}
}

// localUfrag is the ICE username fragment of p's current local description.
func localUfrag(p *peer) string {
	d := p.pc.CurrentLocalDescription()
	if d == nil {
		return ""
	}
	for _, line := range strings.Split(d.SDP, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

func relayedBytes(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return metricstest.Value(t, reg, "khadga_turn_relayed_bytes_total", map[string]string{"direction": "to_peer"})
}

// TestE2EResumeWindowPassed reconnects after the server's resume window
// (2 s in signalingtest): the session is new, so the client joins its
// rooms again under a new peer id and negotiates anew.
func TestE2EResumeWindowPassed(t *testing.T) {
	ts := startServer(t, false)
	alice := ts.newClient(t, "alice", WithReconnectBackoff(6e9, 6e9)) // first retry after 3-6 s
	bob := ts.newClient(t, "bob")
	ra, rb := join(t, alice, "again"), join(t, bob, "again")
	connected(t, ra, "bob")
	connected(t, rb, "alice")
	old := alice.Self().Peer

	alice.DropConnection()
	rc := waitEvent[*Reconnected](t, alice.events, nil)
	if rc.Resumed || rc.Peer == old {
		t.Fatalf("reconnect %+v: want a new session", rc)
	}
	waitEvent[*MemberLeft](t, rb.events, func(e *MemberLeft) bool { return e.Member.Peer == old })
	nm := connected(t, rb, "alice")["alice"]
	if nm.Peer != rc.Peer {
		t.Fatalf("bob connected to %s, want alice's new peer %s", nm.Peer, rc.Peer)
	}
	connected(t, ra, "bob")
	if _, err := rb.Send("welcome back"); err != nil {
		t.Fatal(err)
	}
	if m := waitEvent[*Message](t, ra.events, nil); m.Text != "welcome back" {
		t.Fatalf("alice got %q", m.Text)
	}
}

// TestE2ECloseWaitsForLeftPeers: a peer connection given up when its
// room is left closes in the background, and Close waits for it: once
// Close returns, it is closed. (Close once returned with it still open,
// so that a program that exited then left the other side to find out by
// timeout.)
func TestE2ECloseWaitsForLeftPeers(t *testing.T) {
	ts := startServer(t, false)
	alice, bob, _, rb := ts.aliceAndBob(t, "lab")
	bob.mu.Lock()
	p := bob.peers[alice.Self().Peer]
	bob.mu.Unlock()
	if p == nil {
		t.Fatal("bob has no peer connection to alice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := rb.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	bob.Close()
	if s := p.pc.ConnectionState(); s != webrtc.PeerConnectionStateClosed {
		t.Fatalf("after Close, the peer connection that Leave gave up is %s", s)
	}
}

// TestE2ECloseLeavesNoGoroutines: after clients that chatted and moved a
// file are closed, the goroutine count returns to what it was before they
// were made (pion's own shutdown included).
func TestE2ECloseLeavesNoGoroutines(t *testing.T) {
	ts := startServer(t, false)
	ts.Register(t, "alice", testPassword)
	ts.Register(t, "bob", testPassword)
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var cs []*Client
	for _, u := range []string{"alice", "bob"} {
		c, err := Dial(ctx, ts.URL, Credentials{Username: u, Password: testPassword},
			WithLogger(testLogger(t)), WithSettingEngine(loopbackEngine()))
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	ra, rb := join(t, cs[0], "leak"), join(t, cs[1], "leak")
	connected(t, ra, "bob")
	connected(t, rb, "alice")
	sendFileE2E(t, ra, rb, cs[1].Self().Peer, 256<<10)
	for _, c := range cs {
		c.Close()
	}
	// Pion stops some goroutines asynchronously after Close returns: poll
	// the count, with a generous deadline, instead of sleeping once. The
	// clients' sign-in left a kept-alive HTTP connection in the default
	// transport (two goroutines here, one in the server): not the
	// clients', so close it.
	deadline := time.Now().Add(testTimeout)
	for {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		n := runtime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the clients:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond) // polling a count, not synchronising
	}
}

// TestE2EReconnectWithExpiredToken moves the server's clock past the
// access token's expiry and drops the connection: the reconnect is refused
// with 401, the client refreshes (rotating the refresh token) and gets back
// in.
func TestE2EReconnectWithExpiredToken(t *testing.T) {
	var skew atomic.Int64
	var cfg signaling.Config
	cfg.Logger = testLogger(t)
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	ts := &testServer{logs: &testlog.Buffer{}}
	ts.Server = signalingtest.Start(t, signalingtest.Options{Config: cfg})
	ts.Register(t, "alice", testPassword)
	tokens := make(chan Tokens, 16)
	c := ts.dial(t, "alice", WithTokenCallback(func(tk Tokens) {
		select {
		case tokens <- tk:
		default:
		}
	}))
	first := <-tokens // from the login
	skew.Store(int64(time.Until(first.Expiry) + time.Minute))
	c.DropConnection()
	waitEvent[*Reconnected](t, c.events, nil)
	select {
	case tk := <-tokens:
		if tk.Refresh == first.Refresh || tk.Access == first.Access {
			t.Fatal("tokens did not change")
		}
	default:
		t.Fatal("reconnected without refreshing an expired token")
	}
}

// TestE2EJoinByInvite: a room whose owner requires an invite refuses a
// join without one (ErrInviteRequired) or with a wrong one (ErrBadInvite),
// and takes the right one; after a reconnection that starts a new session
// the client joins again with the invite it was given.
func TestE2EJoinByInvite(t *testing.T) {
	ts := startServer(t, false)
	alice := ts.newClient(t, "alice")
	bob := ts.newClient(t, "bob", WithReconnectBackoff(6e9, 6e9)) // first retry after 3-6 s: past the resume window
	invite := ts.ClaimRoom(t, alice.Tokens().Access, "club")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := bob.Join(ctx, "club"); !errors.Is(err, ErrInviteRequired) {
		t.Fatalf("join without an invite: %v, want ErrInviteRequired", err)
	}
	if _, err := bob.Join(ctx, "club", WithInvite("not-the-invite-at-all")); !errors.Is(err, ErrBadInvite) {
		t.Fatalf("join with a wrong invite: %v, want ErrBadInvite", err)
	}
	if _, err := bob.Join(ctx, "club", WithInvite("bad invite!")); err == nil || errors.Is(err, ErrBadInvite) {
		t.Fatalf("join with a malformed invite: %v, want a local error", err)
	}
	rb, err := bob.Join(ctx, "club", WithInvite(invite))
	if err != nil {
		t.Fatalf("join with the invite: %v", err)
	}
	ra := join(t, alice, "club") // the owner needs none
	connected(t, ra, "bob")
	connected(t, rb, "alice")

	old := bob.Self().Peer
	bob.DropConnection()
	rc := waitEvent[*Reconnected](t, bob.events, nil)
	if rc.Resumed || rc.Peer == old {
		t.Fatalf("reconnect %+v: want a new session", rc)
	}
	if nm := connected(t, ra, "bob")["bob"]; nm.Peer != rc.Peer {
		t.Fatalf("alice connected to %s, want bob's new peer %s, joined again with the invite", nm.Peer, rc.Peer)
	}
}

// TestE2ERoomLostOnRejoin: after a reconnection that starts a new
// session, a rejoin the server refuses for good (the room's owner has
// required invites since, and the client has none) ends the room: the
// app gets RoomLost with the reason, then the room's Events close. It used
// to be logged only, leaving the app in a room it was no longer in.
func TestE2ERoomLostOnRejoin(t *testing.T) {
	ts := startServer(t, false)
	alice := ts.newClient(t, "alice")
	bob := ts.newClient(t, "bob", WithReconnectBackoff(6e9, 6e9)) // first retry after 3-6 s: past the resume window
	rb := join(t, bob, "club")
	ts.ClaimRoom(t, alice.Tokens().Access, "club") // invites from now on; bob, inside, stays

	old := bob.Self().Peer
	bob.DropConnection()
	if rc := waitEvent[*Reconnected](t, bob.events, nil); rc.Resumed || rc.Peer == old {
		t.Fatalf("reconnect %+v: want a new session", rc)
	}
	lost := waitEvent[*RoomLost](t, rb.events, nil)
	if lost.Room != "club" || !errors.Is(lost.Err, ErrInviteRequired) {
		t.Fatalf("RoomLost %+v: want club, with ErrInviteRequired", lost)
	}
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-rb.Events():
			if !ok {
				if _, err := bob.Join(context.Background(), "club", WithInvite("not-the-invite-at-all")); !errors.Is(err, ErrBadInvite) {
					t.Fatalf("joining again after the loss: %v, want the server's ErrBadInvite (the room is forgotten)", err)
				}
				return
			}
		case <-timer.C:
			t.Fatal("the lost room's Events did not close")
		}
	}
}

// TestConsentWithdrawalNeverDropped: a consumer whose room events back up
// (a chatty room, a recorder's slow disk) loses chat, but never a
// withdrawal of consent, which waits for room: a recorder that missed one
// would go on recording someone who said no.
func TestConsentWithdrawalNeverDropped(t *testing.T) {
	ts := startServer(t, false)
	const buf = 32
	alice := ts.newClient(t, "alice")
	rec := ts.newClient(t, "rec", WithEventBuffer(buf))
	ra, rr := join(t, alice, "lab"), join(t, rec, "lab")
	connected(t, ra, "rec")
	connected(t, rr, "alice")
	p, err := ra.peer(rec.Self().Peer)
	if err != nil {
		t.Fatal(err)
	}
	// As SendTo(..., ConsentToRecording()) does for a recorder.
	p.setMember(proto.Member{Peer: rec.Self().Peer, User: "rec", Role: proto.RoleRecorder})
	p.sendConsent("lab", true)
	waitEvent[*RecordingConsent](t, rr.events, func(e *RecordingConsent) bool { return e.Granted })

	// The consumer is busy: alice chats past its buffer, then withdraws
	// (as StopSending does), on the same ordered channel.
	for i := range buf + 8 {
		if _, err := ra.Send(fmt.Sprintf("msg %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	p.sendConsent("lab", false)
	deadline := time.Now().Add(testTimeout)
	for rr.Dropped() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no chat was dropped: the buffer never filled")
		}
		time.Sleep(5 * time.Millisecond) // polling a counter, not waiting for an event
	}
	waitEvent[*RecordingConsent](t, rr.events, func(e *RecordingConsent) bool { return !e.Granted })
}

// TestE2ESignalAfterLeaveDropped: the server checks that two peers share
// a room when a signal arrives, so a signal sent as its target leaves may
// reach the target just after its left answer. The client must drop it,
// not make a peer connection for a peer it shares no room with.
func TestE2ESignalAfterLeaveDropped(t *testing.T) {
	ts := startServer(t, false)
	alice, bob, _, rb := ts.aliceAndBob(t, "lab")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := rb.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	from := alice.Self().Peer
	offer := json.RawMessage(`{"description":{"type":"offer","sdp":"v=0\r\n"}}`)
	for _, room := range []string{"lab", ""} {
		// What the server's reader would hand bob's dispatch in the race.
		bob.dispatch(&proto.Message{Type: proto.TypeSignal, Room: room, From: from, Data: offer})
	}
	bob.mu.Lock()
	p := bob.peers[from]
	bob.mu.Unlock()
	if p != nil {
		t.Fatalf("bob made a peer for %s after leaving the only room they shared", from)
	}
}
