//go:build !unix

package hub

import "syscall"

// smallReceiveBuffer leaves the buffer alone where the call differs; the
// tests that need a full socket run on Unix.
func smallReceiveBuffer(_, _ string, _ syscall.RawConn) error { return nil }
