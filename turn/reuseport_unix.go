//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package turn

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortSupported says whether several UDP sockets can share a port.
const reusePortSupported = true

// reusePort sets SO_REUSEPORT so that several sockets bind one port and the
// kernel spreads clients across them by their address hash.
func reusePort(_, _ string, c syscall.RawConn) error {
	var sockErr error
	err := c.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return sockErr
}
