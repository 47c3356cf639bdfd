package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
)

// connectedLine tells the user how a new peer connection goes: "direct"
// (peer to peer, possibly through NATs) or "relayed" (through the TURN
// server), the candidate types of the pair ICE selected (and how our
// relay reaches the TURN server), and the time since we asked to join the
// room. Tests parse it, so keep its shape:
//
//	connected to bob: relayed (local relay over tcp, remote srflx) 212 ms after joining
func connectedLine(ev *client.PeerConnected, joined time.Time) string {
	return fmt.Sprintf("connected to %s: %s %d ms after joining", name(ev.Member), pairText(ev.Info), time.Since(joined).Milliseconds())
}

// pairText is "direct (local host, remote prflx)" or "relayed (local
// relay over tcp, remote srflx)".
func pairText(info client.ConnInfo) string {
	label := "direct"
	if info.Relayed() {
		label = "relayed"
	}
	local := info.Local.String()
	if info.RelayProtocol != "" {
		local += " over " + info.RelayProtocol
	}
	return fmt.Sprintf("%s (local %s, remote %s)", label, local, info.Remote)
}

// failedLine explains a peer connection that ICE gave up on, instead of
// leaving the user to wait: no path worked, direct or through the TURN
// relay, and what usually causes that. The client keeps retrying (an ICE
// restart), so the line says so.
func failedLine(m proto.Member) string {
	return fmt.Sprintf("cannot reach %s: no network path worked, neither direct nor through the server's TURN relay; "+
		"a firewall on your side or theirs probably blocks UDP and the TURN ports (3478 UDP and TCP, 5349 TLS). Still trying",
		name(m))
}

// failed reports whether ev says a peer connection failed.
func failed(ev client.Event) (proto.Member, bool) {
	if ps, ok := ev.(*client.PeerState); ok && ps.State == webrtc.PeerConnectionStateFailed {
		return ps.Member, true
	}
	return proto.Member{}, false
}

// backLine tells the user a dropped connection works again, how, and
// after how long.
//
//	connection to bob is back: direct (local host, remote prflx) after 6120 ms
func backLine(m proto.Member, info client.ConnInfo, since time.Time) string {
	return fmt.Sprintf("connection to %s is back: %s after %d ms", name(m), pairText(info), time.Since(since).Milliseconds())
}

// roomGone is the error of a command whose room's Events closed; lost is
// the RoomLost that came before, if any. A sign-out (the server refused
// the stored tokens: the sign-in was ended, the password changed, the
// account disabled) exits exitAuth, as a refused login does: only
// signing in again helps, where exitConnect tells a script to try again
// later, which would fail the same way.
func roomGone(lost *client.RoomLost) error {
	switch {
	case lost == nil:
		return fail(exitConnect, "left the room")
	case errors.Is(lost.Err, client.ErrSignedOut):
		return fail(exitAuth, "%s; run khadga-peer login", client.Printable(lost.Err.Error()))
	default:
		return fail(exitConnect, "lost the room: %s", client.Printable(lost.Err.Error()))
	}
}
