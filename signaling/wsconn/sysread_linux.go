package wsconn

import "github.com/khadga/khadga/internal/rawsock"

// sysRead reads a ready socket with a raw system call (rawsock).
func sysRead(fd uintptr, p []byte) (int, error) { return rawsock.Read(fd, p) }
