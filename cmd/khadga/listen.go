package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
)

// listenTCP listens on addr for flag, and says how to get a port below
// 1024 when the system refuses it.
//
// Accepted connections get no TCP keep-alive: the hub pings every
// WebSocket itself and the HTTP server closes idle connections, so the
// kernel's probes would find nothing those miss, and setting them up took
// four system calls per connection (about 3% of the server's CPU while
// clients connect).
func listenTCP(flag, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, listenError(flag, addr, err)
	}
	return ln, nil
}

func listenError(flag, addr string, err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	exe, xerr := os.Executable()
	if xerr != nil {
		exe = "khadga"
	}
	return fmt.Errorf("%s %s: %w: ports below 1024 need root or the CAP_NET_BIND_SERVICE capability "+
		"(grant it once with: sudo setcap cap_net_bind_service=+ep %s), or listen on a port above 1023 "+
		"behind a reverse proxy or a container's port mapping", flag, addr, err, exe)
}
