// Package hub is the WebSocket half of khadga's signaling server: sessions,
// rooms, presence and the relay of WebRTC handshake messages between peers.
// The HTTP upgrade, authentication and origin checks live in package
// signaling, which hands each upgraded connection (plain TCP or TLS) to
// Hub.Accept with the Identity its token proves. The socket itself belongs
// to package wsconn; the wire protocol is package proto.
//
// # Sessions and connections
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
// once. Revoke (sign-out, a disabled account, a retired key) ends the
// sessions it matches at once; it is remembered for a minute, and a
// connection whose credentials were checked before it (Identity.Checked)
// and that attaches after it is ended as it attaches (revocations.go).
// MoveLogin (a password change) is remembered the same way, so that such a
// connection attaches on the new sign-in; a sign-out of the new sign-in
// that came first (in a cluster a node may hear the two in either order)
// ends what the move then moves. Revoke and MoveLogin leave alone a
// session that another node claimed while they looked: it is that
// node's to end or move.
// Ending a session only queues the close, as everything outside a
// connection's own goroutines does (below).
//
// # The connection model
//
// The hub never touches a socket. Each connection is a wsconn.Conn, whose
// package doc is the contract; in short:
//
//   - One reader per connection at a time, started by Accept
//     (wsconn.Conn.Start; an idle connection's reader is a fresh goroutine
//     with a small stack, see wsconn). It is the only goroutine that calls
//     the hub's handlers for that connection (conn.Message) and the only
//     one that closes its socket, after stopping the writer, with no lock
//     held; then it calls conn.ended.
//   - At most one writer per connection, started when its queue becomes
//     non-empty and gone when it is empty, so an idle connection has none.
//     Pings, pongs and close frames go through the same queue.
//   - Everyone else only queues: Send and Offer append and wake the writer,
//     Close queues a close frame, Kill marks the connection dead and wakes
//     its reader and writer with deadlines in the past. None of them blocks
//     or does I/O, so they are safe under any hub lock and from any reader.
//
// This is what makes the hub impossible to freeze from the network: a
// client that stops reading can fill only its own queue; the code that
// finds it full (another client's reader holding a room lock, the presence
// flush, the sweeper) marks it and moves on, and its own goroutines end it.
// ws:// and wss:// run the same code: wsconn differs only in how an idle
// connection waits for bytes (TestFreeze and TestStress run both).
//
// Queues are bounded in messages and bytes (Config.SendQueue,
// Config.SendQueueBytes). A relayed signal is offered: at the limits it is
// refused and its sender gets peer_unavailable, so the sender of a flood
// pays, not its target. Room events, answers and presence may take a queue
// to twice the limits; beyond that, or when a write makes no progress for
// Config.WriteWait, the client is not reading and its connection is dropped
// as a slow consumer (its session may still resume and gets what was
// queued). Each connection's signals are also limited in bytes per second
// (Config.SignalBytesRate), and each user in connections and sessions
// (Config.MaxConnsPerUser), over every node of a cluster (clusterlimit.go:
// a new session past the limit ends the user's oldest one waiting for a
// resume, asking its node if another holds it, on the accepting goroutine
// with no lock held).
//
// # Messages
//
// Every message is decoded once, and a relayed signal is re-encoded once,
// into a pooled buffer, with the server's from: the data is copied as raw
// JSON, checked for syntax in one pass but never parsed. Decoding takes a
// fast path for plain messages (known keys, no escapes) that yields exactly
// what proto.Decode would, and leaves everything else, errors included, to
// proto.Decode; differential fuzz tests hold the two together, and the
// syntax check to json.Valid. Signals are not acknowledged: a signal is
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
// Everything the hub sends to a session held by another node goes through
// the Delivery interface (Config.Delivery): Deliver(node, peer, Envelope)
// for signals and room events; Publish and Gone tell the other nodes of
// this node's sessions (their rooms and presence come from that); Claim
// takes over a session whose client resumed here from another node, and
// Delivered and Undelivered report what happened to messages that waited.
// The local one (the default) has no other node; a multi-node one
// publishes to the node that holds the peer. Deliver only queues, so it
// may be called under hub locks.
// A signal from a session of this node to one this node claimed from
// another (its client resumed here) is first offered to Delivery.Order,
// with no lock held, until Order says it is done: signals this node sent
// to the session before the claim may still be on their way through the
// old node, and Order holds later ones behind them, for a bounded time.
//
// # Lock order
//
// Locks are taken in this order, never the reverse, and no two locks of the
// same kind are held at once (never two sessions, two rooms):
//
//	session.roomsMu -> room.mu -> session.mu -> wsconn's connection lock
//	room.mu -> presence.mu -> session.mu -> wsconn's connection lock
//
// wsconn's lock and the shard locks of the hub's maps (sessions, tokens,
// rooms, conns) are leaves: nothing is taken under them. Hub.mu guards only
// shutdown and goroutine accounting and is never held with another lock.
// Senders of dropped signals are told after every lock is released. No lock
// is held during a socket read or write: only readers and writers do
// those, and they hold none. Config.RoomPolicy, which may read a store,
// is called by join before it takes any lock.
//
// # Rooms
//
// A room's limit counts people, not sessions: room.users counts each
// user's sessions under room.mu, and a join is room_full only when it
// would add a user past the limit (Config.MaxRoomMembers, or the lower cap
// Config.RoomPolicy returns). Whether a user may join at all (an owner's
// invite) is the policy's to say; the hub has no notion of owners.
//
// # Goroutines
//
// Every goroutine is accounted for: each connection's reader, the sweeper
// and timer callbacks (resume windows, presence flushes) in the hub's
// WaitGroup (a reader's count runs from Accept to conn.ended, whichever
// goroutine is the reader by then), and each writer in its connection's,
// which the reader waits for before it ends. Keepalive is one sweeper for the whole hub: it pings
// connections silent for Config.PingPeriod and kills those silent for
// Config.PongWait. Shutdown sends every client a reconnect message and
// close code 1012, stops the timers and waits for all of them; past its
// context's deadline it kills what is left, which wakes every goroutine at
// once.
//
// # Logs and metrics
//
// Bad messages are answered and counted (khadga_hub_errors_total, by
// code), never logged one by one. A connection the hub closes for what
// its client did (too many bad messages, a message over the read limit,
// a full queue) and a revoked session log a line at info that names the
// user; the closes share a budget of lines, so that a client that
// reconnects and misbehaves in a loop cannot flood the log (closes.go).
// Every label value is a constant.
//
// # What the tests show
//
// The points of issue 12 (the connection model), each with its tests; all
// run in make test, under -race. The speed floors are khadga-bench's
// (docs/benchmarks.md).
//
//   - The freeze, over ws:// and wss://: a client that never reads, its
//     queue full, joins a busy room; the others relay within 100 ms (99
//     round trips of 100), pings reach everyone else, Shutdown returns by
//     its deadline: TestFreeze. Two slow consumers flooding each other:
//     TestFreezeTwoSlowConsumersTargetingEachOther. One during a presence
//     burst: TestFreezeSlowConsumerDuringPresenceBurst.
//   - 200 clients at random for 30 s, half over wss://, under a watchdog
//     that prints every stack if a handler runs or a hub lock is held for
//     5 s, and the goroutine count back to its baseline: TestStress,
//     TestStressRoomsScope (skipped only under -short).
//   - The frame reader gives the same messages, ends the same way and
//     writes the same close code as gorilla/websocket, bytes cut anywhere:
//     wsconn's FuzzReaderMatchesGorilla (its seeds in make test).
//   - wss:// end to end: every forModes test of this package, signaling's
//     forSchemes tests, and the browser's TestChatOverTLS (e2e).
//   - Builds for GOOS=windows and darwin: the Makefile's vet target.
//   - Nothing closes a socket from a read callback or under a lock, and a
//     full queue marks a slow consumer without blocking anyone: wsconn's
//     TestKillAndCloseFromInsideHandlersNeverBlock,
//     TestQueueLimitsOfferAndSend and TestWriteTimeoutIsASlowConsumer;
//     TestSlowConsumerIsDroppedOthersKeepGoing here.
//   - Delivery is a seam, and a blocked one holds no hub lock: package
//     cluster's Node is the Delivery of its tests;
//     TestBlockedPublishHoldsNoHubLock (signaling/cluster).
package hub
