package main

import (
	"fmt"
	"time"

	"github.com/khadga/khadga/client"
)

// connectedLine tells the user how a new peer connection goes: "direct"
// (peer to peer, possibly through NATs) or "relayed" (through the TURN
// server), the candidate types of the pair ICE selected, and the time
// since we asked to join the room. Tests parse it, so keep its shape:
//
//	connected to bob: relayed (local relay, remote srflx) 212 ms after joining
func connectedLine(ev *client.PeerConnected, joined time.Time) string {
	label := "direct"
	if ev.Info.Relayed() {
		label = "relayed"
	}
	return fmt.Sprintf("connected to %s: %s (local %s, remote %s) %d ms after joining",
		name(ev.Member), label, ev.Info.Local, ev.Info.Remote, time.Since(joined).Milliseconds())
}
