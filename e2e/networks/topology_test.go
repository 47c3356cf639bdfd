package networks_test

import (
	"testing"
)

// fileSize is what alice sends bob in topologies 1 to 4.
const fileSize = 4 << 20

// TestEndpointIndependentNAT is topology 1: alice and bob each behind a
// router that masquerades (endpoint-independent mapping). ICE connects
// them directly through the addresses the embedded STUN server reported,
// and the file goes peer to peer: the TURN server relays only ICE's
// checks of the relay pairs, never the file. Pion names a pair's local
// end by its socket (host) and the remote end as ICE first heard from it
// (the router's address, peer-reflexive or server-reflexive).
func TestEndpointIndependentNAT(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "t1")
	a, b := w.addSite("a", eim, ""), w.addSite("b", eim, "")
	s := w.startServer("alice", "bob")
	r := s.call(t, a, b, callOpts{room: "nat", fileSize: fileSize})
	for who, c := range map[string]conn{"alice": r.alice, "bob": r.bob} {
		wantConn(t, who, c, "direct", "", "")
		if c.remote != "srflx" && c.remote != "prflx" {
			t.Errorf("%s: remote end %s, want the other router's address (srflx or prflx)", who, c.remote)
		}
	}
	tc := s.turn()
	if tc.toPeer+tc.fromPeer > fileSize/32 {
		t.Errorf("TURN relayed %.0f bytes to and %.0f from peers during a direct %d-byte transfer", tc.toPeer, tc.fromPeer, fileSize)
	}
	record(t, 1, "both behind endpoint-independent NAT", r, tc)
}

// TestSymmetricNAT is topology 2: both routers give every destination a
// new random port (masquerade random,fully-random), so no reflexive
// address works and the call goes through the embedded TURN server:
// chat, a file with its checksum, and video.
func TestSymmetricNAT(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "t2")
	a, b := w.addSite("a", symmetric, ""), w.addSite("b", symmetric, "")
	s := w.startServer("alice", "bob")
	r := s.call(t, a, b, callOpts{room: "sym", fileSize: fileSize})
	for who, c := range map[string]conn{"alice": r.alice, "bob": r.bob} {
		wantConn(t, who, c, "relayed", "", "")
	}
	tc := wantRelayed(t, s, 2)
	record(t, 2, "both behind symmetric NAT", r, tc)
	if n := s.video(t, a, b, "sym", 60); n < 45 {
		t.Errorf("bob recorded %d of 60 frames", n)
	} else {
		t.Logf("RESULT topology 2 video: bob recorded %d of 60 frames", n)
	}
}

// TestRelayOnlyOnPublicSegment is topology 3, the defect of issue 15:
// alice and bob sit on the public segment in relay-only mode, so each
// one's only candidate is its relay on the server's own address. The
// server allows the peers' range and not its own address, yet the two
// relays reach each other.
func TestRelayOnlyOnPublicSegment(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "t3")
	a, b := w.addSite("a", onPublic, ""), w.addSite("b", onPublic, "")
	s := w.startServer("alice", "bob")
	r := s.call(t, a, b, callOpts{room: "relay", relay: true, fileSize: fileSize})
	for who, c := range map[string]conn{"alice": r.alice, "bob": r.bob} {
		// Any of the peer's relays (UDP, TCP, TLS) may win the race.
		wantConn(t, who, c, "relayed", "relay", "relay")
		if c.relayProto == "" {
			t.Errorf("%s: no relay protocol reported", who)
		}
	}
	tc := wantRelayed(t, s, 2)
	record(t, 3, "both relay-only on the public segment", r, tc)
}

// wantRelayed checks that the TURN server made the allocations and
// carried the file.
func wantRelayed(t *testing.T, s *server, allocations float64) turnCounts {
	t.Helper()
	tc := s.turn()
	if tc.allocations < allocations {
		t.Errorf("TURN allocations created %v, want at least %v", tc.allocations, allocations)
	}
	// The file leaves a relay socket for the receiver when the sender's
	// side relays, and arrives at one from the sender when the
	// receiver's side does (both, when both relay).
	if tc.toPeer+tc.fromPeer < fileSize {
		t.Errorf("TURN relayed %.0f bytes to and %.0f from peers, want at least the %d-byte file", tc.toPeer, tc.fromPeer, fileSize)
	}
	return tc
}

// record logs a topology's row of the results table in docs/networks.md.
func record(t *testing.T, n int, what string, r callResult, tc turnCounts) {
	t.Logf("RESULT topology %d (%s): alice %s %s%s/%s, bob %s %s%s/%s; join to open %v and %v; file %.1f MiB/s; TURN allocations %.0f, relayed %.0f bytes to and %.0f from peers",
		n, what, r.alice.label, r.alice.local, over(r.alice.relayProto), r.alice.remote, r.bob.label, r.bob.local, over(r.bob.relayProto), r.bob.remote,
		r.alice.joinToOpen, r.bob.joinToOpen, r.mibps(), tc.allocations, tc.toPeer, tc.fromPeer)
}

// TestUDPBlocked is topology 4: alice's router drops every UDP datagram,
// so STUN and TURN over UDP are gone for her and only TCP gets through.
// The welcome lists every transport the server has (STUN, TURN over UDP
// and TCP, TURNS), and the call is carried by TURN over TCP when the
// router also drops TCP to 5349, or by TURNS on 5349 when it drops TCP to
// 3478 instead (with both open, either may win; see dropUDPAndTURNS).
func TestUDPBlocked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, filter string
	}{
		{"turn-tcp", dropUDPAndTURNS},
		{"turns", dropUDPAndTURNTCP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, "t4"+tc.name[len(tc.name)-1:])
			a, b := w.addSite("a", eim, tc.filter), w.addSite("b", eim, "")
			s := w.startServer("alice", "bob")
			s.wantTransports(t)
			r := s.call(t, a, b, callOpts{room: "tcp", fileSize: fileSize})
			wantConn(t, "alice", r.alice, "relayed", "relay", "")
			wantConn(t, "bob", r.bob, "relayed", "", "relay")
			if want := map[string]string{"turn-tcp": "tcp", "turns": "tls"}[tc.name]; r.alice.relayProto != want {
				t.Errorf("alice's relay reaches the TURN server over %q, want %q", r.alice.relayProto, want)
			}
			tcs := wantRelayed(t, s, 1)
			record(t, 4, "alice's UDP dropped, "+tc.name, r, tcs)
		})
	}
}

// TestNothingWorks: alice's router lets through only the signaling
// server's HTTP port, so no path exists, direct or relayed. Both
// khadga-peers say so in plain words within a minute (ICE gives up after
// pion's 25 s), instead of waiting without end.
func TestNothingWorks(t *testing.T) {
	t.Parallel()
	w := newWorld(t, "tn")
	a, b := w.addSite("a", eim, onlyHTTP), w.addSite("b", eim, "")
	s := w.startServer("alice", "bob")
	alice := s.peer(t, a, "alice", "chat", "none")
	bob := s.peer(t, b, "bob", "chat", "none")
	for _, p := range []*proc{alice, bob} {
		m := p.waitLine(`\* (cannot reach \w+: no network path worked.*)`)
		t.Logf("%s: %s", p.name, m[1])
	}
}

func over(proto string) string {
	if proto == "" {
		return ""
	}
	return " over " + proto
}
