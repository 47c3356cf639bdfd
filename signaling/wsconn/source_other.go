//go:build !unix

package wsconn

import "net"

// newSource: outside Unix every connection waits in a small Read.
func newSource(nc net.Conn, _ bool) source { return &smallSource{nc: nc} }
