// Package proto is khadga's wire protocol: the messages a client and the
// signaling server exchange over the WebSocket at /ws, their validation, error
// codes and version. It imports only the standard library, so any Go peer can
// use it without pulling in the server.
//
// # Transport
//
// The client opens a WebSocket to /ws and offers the subprotocol "khadga.v1"
// (Subprotocol) in Sec-WebSocket-Protocol; the server selects it, or refuses
// the upgrade with HTTP 400 and a body naming the versions it speaks. Auth is
// an "Authorization: Bearer <access token>" header, or for browsers (which
// can set no other header) a one-time ticket from POST /api/ws-ticket, sent
// as the entry "khadga.ticket.<ticket>" after the version in
// Sec-WebSocket-Protocol. The resume token of the last welcome resumes a
// dropped session, as the entry "khadga.resume.<token>" when that welcome
// says protocol_credentials (Welcome.ProtocolCredentials). Credentials stay
// out of the URL, which proxies log; the query parameters "ticket" and
// "resume" still work, for clients and servers from before.
//
// Every message is one JSON object in one text frame, at most MaxMessageSize
// bytes unless the server says otherwise. The envelope:
//
//	{"type":"signal","v":1,"id":"7","ref":"","room":"lobby","to":"p2","from":"p1","data":{...}}
//
// type is required; v is optional (absent means Version, a newer one is
// refused with unsupported_version); id is the sender's request id, echoed as
// ref in the ack or error it causes; from is stamped by the server, and a
// client that sets it is refused.
//
// # A handshake, end to end
//
//	alice                        server                         bob
//	  |-- WebSocket /ws ----------->|                              |
//	  |<-- welcome (peer a1) -------|                              |
//	  |-- join lobby (id 1) ------->|                              |
//	  |<-- joined (ref 1, peers: b1)|-- peer-joined a1 ----------->|
//	  |-- signal to b1 {offer} ---->|-- signal from a1 {offer} --->|
//	  |<-- signal from b1 {answer} -|<-- signal to a1 {answer} ----|
//	  |<== ICE candidates both ways as signals, then media and data flow peer to peer ==>|
//
// Both peers of a pair run W3C perfect negotiation; Polite says which side is
// polite (the peer id that sorts first), so both agree without talking. The
// server forwards a signal only when sender and target share a room, and
// never reads its data. It checks that when the signal arrives, so a signal
// sent as its target leaves their last shared room may still reach the
// target just after the ack of its own leave: a client drops signals from
// peers it no longer shares a room with (the Go client and the JS SDK do).
//
// # Server to client
//
// welcome, first on every connection. ice_servers is in the browser's
// RTCIceServer shape with fresh TURN credentials; resume_token is single-use:
//
//	{"type":"welcome","data":{"peer":"Xk3...","user":"alice","role":"user",
//	 "resume_token":"q9...","resume_window":30,"ice_servers":[{"urls":["stun:turn.example:3478",
//	 "turn:turn.example:3478?transport=udp"],"username":"1764290000:alice","credential":"Zm9v..."}],
//	 "ice_servers_expire":1764290000}}
//
// After a resume, resumed is true and rooms lists the rooms kept:
//
//	{"type":"welcome","data":{"peer":"Xk3...","user":"alice","role":"user","resume_token":"r8...",
//	 "resume_window":30,"resumed":true,"rooms":["lobby"],"ice_servers":[]}}
//
// joined answers join with the members already present:
//
//	{"type":"joined","ref":"1","room":"lobby","data":{"peers":[{"peer":"b1","user":"bob","role":"user"}]}}
//
// peer-joined and peer-left tell the other members:
//
//	{"type":"peer-joined","room":"lobby","data":{"peer":"a1","user":"alice","role":"user"}}
//	{"type":"peer-left","room":"lobby","data":{"peer":"a1"}}
//
// signal is a forwarded signal, with from stamped by the server:
//
//	{"type":"signal","from":"a1","room":"lobby","data":{"description":{"type":"offer","sdp":"v=0..."}}}
//	{"type":"signal","from":"a1","data":{"candidate":{"candidate":"candidate:1 1 udp ...","sdpMid":"0","sdpMLineIndex":0}}}
//	{"type":"signal","from":"a1","data":{"renegotiate":{"video":1,"ice_restart":false}}}
//
// The third form is the polite peer asking the impolite one for an offer
// (see Renegotiate): the Go client and the JS SDK both speak it.
//
// presence says who is online: a full list first, then changes. The
// server's scope decides whom it shows (ScopeGlobal: everyone online, the
// first ones by name and all of them as a count; ScopeRooms: the peers in
// rooms one shares). Changes are coalesced, a few times a second at most;
// count alone changes at most every few seconds. Clients ignore kinds they
// do not know:
//
//	{"type":"presence","data":{"kind":"full","peers":[{"peer":"b1","user":"bob","role":"user"}],"count":1,"scope":"global"}}
//	{"type":"presence","data":{"kind":"online","peers":[{"peer":"c1","user":"rec","role":"recorder"}],"count":2}}
//	{"type":"presence","data":{"kind":"offline","peers":[{"peer":"c1","user":"rec","role":"recorder"}],"count":1}}
//	{"type":"presence","data":{"kind":"count","peers":[],"count":5230}}
//
// A full list cut at the server's limit says so ("truncated":true), and
// count then says how many are online in all.
//
// ack, pong and error answer requests by ref:
//
//	{"type":"ack","ref":"2"}
//	{"type":"pong","ref":"3"}
//	{"type":"error","ref":"4","data":{"code":"not_in_room","message":"you share no room with peer b1"}}
//
// reconnect asks the client to reconnect (and resume), for example before a
// restart; the server then closes with code 1012:
//
//	{"type":"reconnect","data":{"after":500}}
//
// When the credentials of a session are revoked (sign-out, an account
// disabled or deleted, a role changed, a signing key retired) the server
// sends an error with code revoked and closes with code 4401
// (CloseRevoked), the reason in the close frame; the session cannot be
// resumed:
//
//	{"type":"error","data":{"code":"revoked","message":"your account was disabled"}}
//
// A connection over the user's limit of open connections gets an error
// with code rate_limited and close code 4429 (CloseTooManyConnections).
//
// # Client to server
//
//	{"type":"join","id":"1","room":"lobby"}
//	{"type":"join","id":"6","room":"standup","data":{"invite":"Qm9vdHN0cmFwcGVkSW52aXRl"}}
//	{"type":"leave","id":"2","room":"lobby"}
//	{"type":"signal","id":"5","to":"b1","data":{"description":{"type":"answer","sdp":"v=0..."}}}
//	{"type":"ping","id":"3"}
//
// # Rooms, owners and invites
//
// A room exists while it has members; joining creates it. A room holds at
// most the server's limit of people (its sessions count once per user: a
// user with three tabs in a room takes one place), and is then room_full.
// A signed-in user may also claim a room name over the HTTP API (PUT
// /api/rooms/{name}, see docs/protocol.md) and become its owner; the
// owner may set a lower member cap and require an invite, a token the
// server makes and the owner shares (the web app puts it in a link). A
// join to such a room carries the invite in its data, as above. Without
// one the server answers invite_required, with a wrong or replaced one
// bad_invite:
//
//	{"type":"error","ref":"6","data":{"code":"invite_required","message":"room standup needs an invite; ask its owner for the link"}}
//	{"type":"error","ref":"6","data":{"code":"bad_invite","message":"that invite is not valid for room standup (wrong, or replaced by a newer one)"}}
//
// The owner, and a session whose token grants that room by name (a bot
// token minted for it), join without an invite and above the owner's cap.
// An invite to a room that needs none is ignored, and a join without
// data behaves as it always did: clients that know nothing of owners keep
// working in every room that does not require an invite. Settings apply
// to joins: members already in a room stay when its owner changes them.
//
// A signal may name a room, and then both peers must be in it. Signals get no
// ack: a signal is delivered, or its sender gets an error with its id as ref.
//
// # Errors
//
// Error codes are stable (see Code): bad_message, too_large, unknown_type,
// not_in_room, unknown_peer, unauthorized, rate_limited,
// unsupported_version, room_full, too_many_rooms, peer_unavailable, internal,
// revoked, invite_required, bad_invite.
// A bad message gets an error and the connection keeps working.
package proto
