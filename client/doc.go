// Package client is a khadga peer in Go: it signs in to a khadga server,
// keeps a signaling WebSocket open (refreshing its token, reconnecting with
// backoff and resuming its session after a drop), and talks to the other
// members of its rooms peer to peer over WebRTC (pion).
//
// One PeerConnection is made per remote peer and negotiated with the W3C
// "perfect negotiation" pattern: proto.Polite picks the polite side from the
// two peer ids, so simultaneous offers, renegotiation and ICE restarts
// converge. Candidates trickle over signal messages.
//
// Everything that happens is reported as an Event on a channel: room events
// on Room.Events, connection events on Client.Events. There are no
// callbacks. Chat goes over a negotiated data channel "chat"; each file
// goes over its own data channel with backpressure and a SHA-256 check;
// video goes out only to the peers chosen with Publication.SendTo, and never
// to a recorder without ConsentToRecording.
//
// The client never imports the server's packages; it speaks only proto.
package client
