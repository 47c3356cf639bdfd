// Package hub is the WebSocket half of khadga's signaling server: sessions,
// rooms, presence and the relay of WebRTC handshake messages between peers.
// The HTTP upgrade, authentication and origin checks live in package
// signaling, which hands each upgraded connection to Hub.ServeConn with the
// Identity its token proves. The wire protocol is package proto.
//
// # Connection model
//
// A session is a peer: a random peer id, the user and role of its token, the
// rooms it joined, and a single-use resume token (only its SHA-256 is kept).
// A connection is one WebSocket of a session. When the socket drops, the
// session waits Config.ResumeWindow for a new connection presenting its
// resume token (same user only); messages for it are kept meanwhile in a
// bounded absent queue (Config.AbsentQueue, Config.AbsentQueueTTL). Other
// peers see no leave or join across a resume. When the window passes, the
// session ends: its rooms get peer-left and presence says offline. A client
// that closes with 1000 (normal closure) has left, and its session ends at
// once.
//
// Each connection has exactly one reader, the goroutine that called
// ServeConn (with Start, a goroutine of the hub, which may hand the role to
// a fresh one, never two at once), and at most one writer. A signal for a
// connection with nothing queued is written by the sender's reader itself,
// with one non-blocking write, as an event loop would (direct.go); what the
// socket does not take, and everything that finds a queue, goes to a writer
// goroutine that the hub starts when the send queue becomes non-empty and
// that exits when it is empty again. An idle connection therefore holds one
// goroutine, no write buffer (Upgraders from NewUpgrader lend them from a
// pool) and no read buffer of the hub's (borrowed from a pool per message).
// Keepalive is one sweeper goroutine for the whole hub: it pings
// connections silent for Config.PingPeriod and drops those silent for
// Config.PongWait.
//
// Memory per idle connection is dominated by what holds that reader.
// ServeConn keeps the HTTP handler's goroutine, and with it net/http's
// request, contexts and 4 KiB read and write buffers: about 22 KiB in all
// (BenchmarkIdleConnMemory). Start lets the handler return and reads on the
// hub's own goroutines: about 7 KiB, of which 4 KiB is stack, because
// handling a message grows a stack to 8 KiB and the runtime never shrinks
// one below 4 KiB.
//
// Upgrade (in place of Upgrader.Upgrade) wraps the socket. Its reads borrow
// a 16 KiB pooled buffer only while data is waiting, so a busy client's
// frames arrive many to a system call and an idle one holds no buffer, and
// they stop at frame ends, so that gorilla never buffers past the frame it
// reads. Whole text frames waiting in that buffer are unmasked and handled
// by the reader without gorilla; control frames, fragments and partly read
// frames go through gorilla; and as long as whole frames come, the reader
// stays inside one RawConn.Read, so that a read that drained the socket is
// followed by a wait, not by a read that would return EAGAIN (one read
// system call per message). A Start reader hands its role to a fresh
// goroutine when a message leaves nothing to read and its last hand-off
// was over a second ago: the fresh one waits for data in a shallow call on
// a 2 KiB stack, so an idle connection costs about 5 KiB, while a busy one
// keeps its grown stack instead of starting a goroutine per message. Reads
// and writes on the socket are raw system calls (internal/rawio), which
// keeps the scheduler from handing the thread's P away during a loopback
// write. The writer corks the socket, so that a batch of queued messages
// leaves in one write system call. The fastest and leanest setup is
// NewUpgrader, Upgrade and Start.
//
// The send queue is bounded (Config.SendQueue). A connection whose queue is
// full is a slow consumer: it is dropped at once (its session may still
// resume and gets what was queued), and the signal that overflowed it is
// answered with peer_unavailable. Nobody ever blocks on another client's
// socket, and no lock is held while a socket is written.
//
// Every message is decoded once, and a relayed signal is re-encoded once,
// into a pooled buffer, with the server's from: the data is copied as raw
// JSON, checked for syntax in one pass but never parsed. Decoding takes a
// fast path for plain messages (known keys, no escapes) that yields exactly
// what proto.Decode would, and leaves everything else, errors included, to
// proto.Decode; differential fuzz tests hold the two together, and the
// syntax check to json.Valid. A signal written at once allocates nothing
// but its short ids (Envelope.Borrowed). Signals are not acknowledged: a signal is
// delivered, or its sender gets an error whose ref is the signal's id
// (unknown_peer, not_in_room, peer_unavailable, also when a kept signal
// expires before its target comes back).
//
// Bad input gets an error and the connection keeps working: malformed JSON
// and binary frames get bad_message, unknown types unknown_type, newer
// versions unsupported_version, and messages over Config.MessageRate
// rate_limited. Each of these spends an abuse allowance (Config.AbuseLimit,
// refilled at one per second); when it runs out, the connection is closed
// with 1008. A message over Config.ReadLimit gets too_large and the
// connection is closed with 1009.
//
// # Delivery
//
// Everything the hub sends to a session other than the one whose request it
// is handling goes through the Delivery interface: Deliver(peer, Envelope)
// for signals and room events, Presence(member, online) for the presence
// feed. The local implementation looks the peer up in this hub's session
// directory. A multi-node version can publish to the node that holds the
// peer (NATS) without changing the hub. Presence is shared state: one online
// map and one cached, encoded full list for all subscribers, and changes are
// coalesced over Config.PresenceInterval.
//
// # Lock order
//
// Locks are taken in this order, never the reverse, and no two locks of the
// same kind are held at once (never two sessions, two rooms or two
// connections):
//
//	session.roomsMu -> room.mu -> session.mu -> conn.mu
//	presence.mu -> conn.mu
//
// The shard locks of the hub's maps (sessions, tokens, rooms, conns) are
// leaves: they may be taken under any of the above, and nothing is taken
// under them. Hub.mu guards only shutdown and goroutine accounting and is
// never held with another lock. Senders of dropped signals are told after
// every lock is released. No lock is held during a socket write.
//
// # Goroutines
//
// Every goroutine is accounted for: ServeConn calls, the sweeper and timer
// callbacks (resume windows, presence flushes) in the hub's WaitGroup, and
// each writer in its connection's, which ServeConn waits for before it
// returns. Shutdown sends every client a reconnect message and close code
// 1012, stops the timers and waits for all of them.
package hub
