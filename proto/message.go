package proto

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Version is the protocol version this package speaks. A message may carry it
// in its "v" field; a missing "v" means Version.
//
// History:
//
//	1  first version: welcome, join/joined, leave, peer-joined/left, signal,
//	   presence, ping/pong, ack, error, reconnect.
//	   Later additions that old peers need not know: presence count and
//	   scope; join data {"invite"} and the codes invite_required and
//	   bad_invite (rooms with an owner); revoked. A client that sends no
//	   join data gets exactly the version 1 behaviour.
const Version = 1

// Subprotocol is the WebSocket subprotocol for Version. The client offers it
// in Sec-WebSocket-Protocol and the server selects it.
const Subprotocol = "khadga.v1"

// Subprotocols lists every subprotocol the server speaks, newest first.
var Subprotocols = []string{Subprotocol}

// MaxMessageSize is the default limit on one WebSocket message, in bytes.
// Servers may lower or raise it; Decode enforces the limit it is given.
const MaxMessageSize = 64 << 10

// Message types, server to client.
const (
	TypeWelcome    = "welcome"
	TypeJoined     = "joined"
	TypePeerJoined = "peer-joined"
	TypePeerLeft   = "peer-left"
	TypePresence   = "presence"
	TypeAck        = "ack"
	TypeError      = "error"
	TypePong       = "pong"
	TypeReconnect  = "reconnect"
)

// Message types, client to server. TypeSignal travels both ways.
const (
	TypeJoin   = "join"
	TypeLeave  = "leave"
	TypeSignal = "signal"
	TypePing   = "ping"
)

// Roles a session can have. RoleRecorder is granted only by a token minted
// with `khadga token`; peers never send it media unless their user opted in.
const (
	RoleUser     = "user"
	RoleRecorder = "recorder"
	RoleAdmin    = "admin"
)

// Message is the envelope of every WebSocket message.
type Message struct {
	Type string `json:"type"`
	// V is the protocol version of this message; 0 (absent) means Version.
	V int `json:"v,omitempty"`
	// ID is the sender's request id, echoed in the ack or error it causes.
	ID string `json:"id,omitempty"`
	// Ref is the ID of the request this message answers.
	Ref  string `json:"ref,omitempty"`
	Room string `json:"room,omitempty"`
	// To addresses a signal to one peer id.
	To string `json:"to,omitempty"`
	// From is set by the server only; a client that sets it is refused.
	From string          `json:"from,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

// ICEServer is one entry of RTCConfiguration.iceServers, in the browser's
// shape, so a client can pass the list to RTCPeerConnection unchanged.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Welcome is the data of the first message on every connection.
type Welcome struct {
	Peer string `json:"peer"`
	User string `json:"user"`
	Role string `json:"role"`
	// ResumeToken lets this session resume after a dropped socket. It is
	// single-use: each welcome carries a fresh one.
	ResumeToken string `json:"resume_token"`
	// ResumeWindow is how long, in seconds, the session waits for a resume.
	ResumeWindow int `json:"resume_window"`
	// Resumed is true when this connection took over an existing session.
	Resumed bool `json:"resumed,omitempty"`
	// Rooms lists the rooms the session is in (non-empty only on resume).
	Rooms []string `json:"rooms,omitempty"`
	// ICEServers carries STUN and TURN servers with fresh credentials.
	ICEServers []ICEServer `json:"ice_servers"`
	// ICEServersExpire is when the TURN credentials expire (Unix seconds), 0 if none.
	ICEServersExpire int64 `json:"ice_servers_expire,omitempty"`
	// ProtocolCredentials says the server reads a resume token (and a
	// ticket) from Sec-WebSocket-Protocol: a client resumes that way, not
	// in the URL, only after a welcome that says so, so that it still
	// resumes on a server from before (a rolling update).
	ProtocolCredentials bool `json:"protocol_credentials,omitempty"`
}

// Member is a peer in a room, as listed in joined, peer-joined and presence.
type Member struct {
	Peer string `json:"peer"`
	User string `json:"user"`
	Role string `json:"role"`
}

// Join is the optional data of a join. Invite is the token of an invite
// link, for a room whose owner requires one (CodeInviteRequired,
// CodeBadInvite); a join without data is a join without an invite.
type Join struct {
	Invite string `json:"invite,omitempty"`
}

// JoinData returns the data of a join message, checked: no data is the
// zero Join. Every failure is a *ProtocolError (bad_message).
func (m *Message) JoinData() (Join, error) {
	var j Join
	if len(m.Data) == 0 {
		return j, nil
	}
	if m.Data[0] != '{' {
		return j, protoErr(CodeBadMessage, "join data must be an object")
	}
	if err := m.DecodeData(&j); err != nil {
		return j, err
	}
	if err := ValidInvite(j.Invite); j.Invite != "" && err != nil {
		return j, protoErr(CodeBadMessage, "join: "+err.Error())
	}
	return j, nil
}

// Joined answers a join with the members already present (not the joiner).
type Joined struct {
	Peers []Member `json:"peers"`
}

// PeerLeft is the data of peer-left.
type PeerLeft struct {
	Peer string `json:"peer"`
}

// Presence kinds.
const (
	PresenceFull    = "full"    // Peers is everyone online (that the scope shows)
	PresenceOnline  = "online"  // Peers came online
	PresenceOffline = "offline" // Peers went offline
	PresenceCount   = "count"   // only Count changed; Peers is empty
)

// Presence scopes: whom a connection's presence feed shows.
const (
	// ScopeGlobal shows everyone online, the first MaxPresenceList of them
	// by name and the rest as a count.
	ScopeGlobal = "global"
	// ScopeRooms shows the peers one shares a room with.
	ScopeRooms = "rooms"
)

// Presence tells who is online. The first presence on a connection is a
// "full" list; later ones are changes. Clients must ignore kinds they do
// not know.
type Presence struct {
	Kind  string   `json:"kind"`
	Peers []Member `json:"peers"`
	// Truncated is set when a full list was cut at the server's limit:
	// Count says how many are online in all.
	Truncated bool `json:"truncated,omitempty"`
	// Count is how many are online in the scope, listed or not (global
	// scope only; 0 when unknown).
	Count int `json:"count,omitempty"`
	// Scope is the feed's scope, ScopeGlobal or ScopeRooms (full lists only).
	Scope string `json:"scope,omitempty"`
}

// Error is the data of an error message.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Reconnect asks the client to reconnect, for example before a server restart.
type Reconnect struct {
	// After is a hint, in milliseconds, of how long to wait first.
	After int `json:"after,omitempty"`
}

// Signal is the conventional data of a signal message. The server does not
// read it: it forwards data as opaque JSON. Exactly one field is set.
type Signal struct {
	Description *SessionDescription `json:"description,omitempty"`
	Candidate   *ICECandidate       `json:"candidate,omitempty"`
	// Renegotiate is sent by the polite peer to ask the impolite one for an
	// offer, instead of offering itself. Peers built on pion need it: pion
	// cannot roll back a local offer, so the W3C pattern's polite rollback is
	// impossible there. A peer that does not know it (a browser without the
	// SDK) ignores it, and the polite side then offers after a timeout.
	Renegotiate *Renegotiate `json:"renegotiate,omitempty"`
}

// Renegotiate asks for an offer with room for Video and Audio new
// transceivers (for tracks the polite side wants to add), restarting ICE if
// ICERestart.
type Renegotiate struct {
	Video      int  `json:"video,omitempty"`
	Audio      int  `json:"audio,omitempty"`
	ICERestart bool `json:"ice_restart,omitempty"`
}

// SessionDescription mirrors RTCSessionDescriptionInit.
type SessionDescription struct {
	Type string `json:"type"` // offer, answer, pranswer, rollback
	SDP  string `json:"sdp"`
}

// ICECandidate mirrors RTCIceCandidateInit. An empty Candidate means the end
// of candidates.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// Polite reports whether peer self is the polite side of perfect negotiation
// with peer other: the peer whose id sorts first is polite. Both sides reach
// the same answer without talking, so exactly one of them is polite.
func Polite(self, other string) bool { return self < other }

// New builds a message with data marshalled as JSON. Data types in this
// package always marshal, so New panics only on a programming error.
func New(typ string, data any) *Message {
	m := &Message{Type: typ}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			panic(fmt.Sprintf("proto: marshal %s data: %v", typ, err))
		}
		m.Data = b
	}
	return m
}

// NewError builds an error message answering request ref.
func NewError(ref string, code Code, format string, args ...any) *Message {
	m := New(TypeError, Error{Code: code, Message: fmt.Sprintf(format, args...)})
	m.Ref = ref
	return m
}

// Encode marshals m.
func (m *Message) Encode() ([]byte, error) { return json.Marshal(m) }

// DecodeData unmarshals m.Data into v, refusing unknown fields.
func (m *Message) DecodeData(v any) error {
	if len(m.Data) == 0 {
		return &ProtocolError{Code: CodeBadMessage, Message: m.Type + ": missing data"}
	}
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &ProtocolError{Code: CodeBadMessage, Message: m.Type + " data: " + err.Error()}
	}
	return nil
}
