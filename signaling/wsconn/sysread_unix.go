//go:build unix && !linux

package wsconn

import "syscall"

// sysRead reads a ready socket.
func sysRead(fd uintptr, p []byte) (int, error) { return syscall.Read(int(fd), p) }
