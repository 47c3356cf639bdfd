//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package turn

import "syscall"

// reusePortSupported says whether several UDP sockets can share a port.
const reusePortSupported = false

func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
