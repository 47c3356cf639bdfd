// Package rawsock reads and writes non-blocking sockets with raw system
// calls on Linux, and is a no-op elsewhere.
//
// A read or write on a non-blocking socket never waits, but made the usual
// way (syscall.Syscall) it tells the Go scheduler it may block: the
// runtime's sysmon thread is woken from its deep sleep and then polls every
// 20 µs for a millisecond or more, and a loopback write, which runs the
// receiving side's network stack inline and can take tens of microseconds,
// may have its P handed to another thread, with the futex wake-ups that
// follow. syscall.RawSyscall skips that bookkeeping. Waiting for a socket
// is still the runtime poller's, through syscall.RawConn, so deadlines and
// Close keep working. It pays where a process makes many short system
// calls and is often idle between them: a signaling node at a few thousand
// messages a second, its NATS connection, and the benchmark's load client.
//
// Wrap returns a net.Conn whose Read and Write do this (a *Conn on Linux,
// the conn itself elsewhere); Read and IO are the bare system calls, for
// callers that read inside a RawConn callback of their own.
package rawsock
