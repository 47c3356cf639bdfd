package client

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/proto"
)

// Event is something that happened in a room or on the connection. Rooms
// deliver them on Room.Events and the client on Client.Events, in order.
// The concrete types are *MemberJoined, *MemberLeft, *PeerConnected,
// *PeerState, *Message, *IncomingFile, *IncomingTrack, *RoomLost (room
// events) and *Presence, *Disconnected, *SignedOut, *Reconnected,
// *NetworkChanged (client events).
//
// Event channels are buffered. A consumer that falls more than the buffer
// behind loses events (the client logs and counts them rather than stall
// the connection); an IncomingFile that cannot be delivered is rejected.
type Event interface{ event() }

// MemberJoined: a peer is in the room (already there when we joined, or
// arrived later).
type MemberJoined struct {
	Room   string
	Member proto.Member
}

// MemberLeft: a peer left the room or went away.
type MemberLeft struct {
	Room   string
	Member proto.Member
}

// PeerConnected: the peer connection to a member is up and its chat channel
// is open, so Send reaches it.
type PeerConnected struct {
	Room   string
	Member proto.Member
	Info   ConnInfo
}

// PeerState: the peer connection to a member changed state.
type PeerState struct {
	Room   string
	Member proto.Member
	State  webrtc.PeerConnectionState
}

// Message is a chat message from a member. From comes from the peer
// connection it arrived on, not from the message, so it cannot be forged.
type Message struct {
	Room string
	From proto.Member
	Text string
	// Time is the sender's clock when it sent the message.
	Time time.Time
}

// IncomingFile is a file a member offers. Call Accept to receive it or
// Reject to refuse it; an offer left alone times out on the sender's side.
type IncomingFile struct {
	Room string
	From proto.Member
	Name string
	Size int64
	in   *incoming
}

// IncomingTrack is a media track a member sends us. Read it (for example
// with WriteIVF) until it ends.
type IncomingTrack struct {
	Room     string
	From     proto.Member
	Track    *webrtc.TrackRemote
	Receiver *webrtc.RTPReceiver
	pc       *webrtc.PeerConnection
}

// RequestKeyframe asks the sender for a key frame (RTCP PLI), for a decoder
// that starts late or lost packets.
func (t *IncomingTrack) RequestKeyframe() error {
	return t.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.Track.SSRC())}})
}

// Presence: who is online changed (see proto.Presence for the kinds).
type Presence struct {
	Kind  string
	Peers []proto.Member
	// Count is how many are online in all, listed or not, where the
	// server says (0 where it does not): a full list may name only the
	// first of them, and a "count" update has no Peers, only Count.
	Count int
}

// RoomLost: after a reconnect that lost the session, the server refused
// to let the client back into the room (Err says why: it now wants an
// invite, it is full, ...), or the client was signed out (Err wraps
// ErrSignedOut). The room's Events channel closes after it.
type RoomLost struct {
	Room string
	Err  error
}

// Disconnected: the signaling connection dropped; the client is
// reconnecting. Peer connections stay up meanwhile.
type Disconnected struct{ Err error }

// SignedOut: the client stopped reconnecting, for good: the server no
// longer accepts its tokens (Err wraps ErrSignedOut). Every room is lost
// too (RoomLost), and requests fail with Err. Peer connections are
// closed; sign in again with a new Client.
type SignedOut struct{ Err error }

// Reconnected: the signaling connection is back. Resumed says whether the
// session survived (same peer id, rooms kept). If not, the client has a new
// peer id, joined its rooms again and renegotiates with every member.
type Reconnected struct {
	Resumed bool
	Peer    string
}

// NetworkChanged: the host's addresses changed (a move to another
// network): the client checks its signaling connection and restarts ICE
// with Peers, the members whose connections had a path, without waiting
// for ICE to find it gone. A PeerState event with
// webrtc.PeerConnectionStateConnected follows for each once the restart
// has found a path.
type NetworkChanged struct{ Peers []proto.Member }

func (*MemberJoined) event()   {}
func (*MemberLeft) event()     {}
func (*PeerConnected) event()  {}
func (*PeerState) event()      {}
func (*Message) event()        {}
func (*IncomingFile) event()   {}
func (*IncomingTrack) event()  {}
func (*Presence) event()       {}
func (*RoomLost) event()       {}
func (*Disconnected) event()   {}
func (*SignedOut) event()      {}
func (*Reconnected) event()    {}
func (*NetworkChanged) event() {}
