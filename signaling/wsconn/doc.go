// Package wsconn is the server side of one WebSocket connection (RFC 6455)
// after the HTTP upgrade: frames in, frames out, a bounded send queue,
// keepalive hooks and a close that never blocks whoever asks for it. It
// runs over any net.Conn, so plain TCP (ws://) and in-process TLS (wss://)
// take the same code; only the way an idle connection waits for its next
// bytes differs, behind one small interface (source).
//
// The hub (package hub) builds its sessions, rooms and presence on top of
// it and never touches a socket.
//
// # Who reads, who writes, who closes, what may block
//
// Reader: one goroutine at a time per connection (Start starts it; Serve
// runs it on the caller's). It is the only goroutine that reads the socket,
// the only one that calls the Handler, and the only one that closes the
// socket, which it does after the writer has exited and with no lock held.
// It blocks in socket reads and in the Handler. When the connection is
// quiet (nothing was read for a second before the last frame, or nothing
// yet), the reader hands over to a fresh goroutine that only waits for the
// next bytes and then goes on as the reader: a goroutine keeps the largest
// stack it ever needed, and handling a message needs 4 KiB or more, while
// the wait fits in the runtime's smallest, 2 KiB. An idle connection then
// costs that much stack, not twice or four times it. A busy connection
// keeps its reader, so that its messages do not each pay for a new
// goroutine.
//
// Writer: at most one goroutine at a time, started by whoever queues into an
// empty queue while none runs. When the queue is empty it lingers for
// 25-50 ms (woken through a channel by whoever queues next), then exits,
// so that a busy connection keeps one writer and an idle connection has
// none. It is the only goroutine that writes the socket:
// data, pings, pongs and the close frame all go through the queue, so no
// control frame can land inside a data frame. It blocks only in socket
// writes, each bounded by Config.WriteWait.
//
// Everyone else (handlers of other connections, timers, the keepalive
// sweeper, code holding hub locks) may call Send, Offer, Ping, Close and
// Kill. These never block and never do socket I/O: they change the
// connection's state under its mutex, which is a leaf (nothing is locked
// under it), and wake the reader or the writer. A wake-up is a deadline in
// the past (SetReadDeadline, SetWriteDeadline), which makes a blocked read or
// write return at once without closing anything, or a send on the lingering
// writer's channel, which has room for it.
//
// Closing is therefore a state change plus a wake-up. Close queues a close
// frame behind what is queued and refuses further messages; the reader then
// waits Config.CloseGrace for the client's answer. Kill drops the connection
// now: the reader and the writer wake, the writer exits, the reader closes
// the socket. A client's close frame is answered at once: what is queued
// then is not written (a browser drops what comes after its close()).
// Serve returns what was queued but not written, so that the caller can
// keep it for a resumed session.
//
// # Send queue and slow consumers
//
// The queue is bounded in messages and in bytes. Offer, for messages the
// connection's client did not ask for and that have a sender who can be
// told (relayed signals), refuses a message once the queue holds
// Config.QueueLen messages or Config.QueueBytes bytes: the sender pays for a
// flood, not the receiver. Send, for everything else, admits up to twice
// those limits; beyond them the client is not reading, and the connection
// is killed as a slow consumer (ErrSlowConsumer) without blocking the
// caller. A write that makes no progress for Config.WriteWait kills it too.
// The reader holds back (stops reading the socket) while the queue is over
// the Offer limits, so that a client that sends requests faster than it
// reads the answers is slowed by TCP rather than dropped.
//
// # Buffers
//
// An idle connection holds no read or write buffer. The reader borrows a
// pooled buffer when bytes arrive and returns it when every frame in it has
// been handled; the writer borrows one per batch, and a batch of queued
// messages leaves in one write. Once a batch is written the writer calls
// each message's Release, and touches it no more, so that the messages'
// owner (the hub) can keep them in pooled buffers too. A write that fails
// releases only the messages whose frames the socket took whole; the
// others go back ahead of the queue and come out in Result.Unsent, so
// that nothing accepted is lost without a word. A frame larger than a
// pooled read buffer gets a buffer of its own that grows as its bytes
// come. On Unix, a plain
// TCP socket is waited on for readiness through syscall.RawConn before any
// buffer is taken (its callback only reads; nothing is handled inside it).
// Elsewhere, and over TLS, the reader waits in a Read of a 16-byte array
// of its own. On Linux a plain TCP socket is read and written with raw
// system calls (internal/rawsock), which keep a busy but often idle server
// from waking the runtime's sysmon thread at every system call; the
// waiting, deadlines and Close are the runtime poller's as before.
//
// # Frames
//
// The reader follows RFC 6455 as gorilla/websocket does, and a differential
// fuzz test holds the two together: client frames must be masked; reserved
// bits, unknown opcodes, control frames over 125 bytes or fragmented, and
// fragments out of order are protocol errors (close 1002); a message over
// Config.ReadLimit is refused with close 1009 (Handler.TooLarge runs first,
// to say why); pings are answered with pongs; a close frame is answered with
// a close frame of the same code.
package wsconn
