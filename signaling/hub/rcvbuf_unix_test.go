//go:build unix

package hub

import "syscall"

// smallReceiveBuffer is a net.Dialer's Control: a 4 KiB receive buffer
// before connect, so that the window the client offers stays small.
func smallReceiveBuffer(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return serr
}
