package client

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// netNotices hears from the kernel (a route netlink socket) whenever a
// link or an address comes or goes, so that the watch reads the host's
// addresses then, rather than on a timer. A notice is only a wake-up:
// what changed is read afterwards with hostAddrs, so a notice that is
// lost to a full socket buffer (ENOBUFS) is a wake-up too.
type netNotices struct {
	f *os.File
	c chan struct{} // one pending notice at most; closed when reading fails
}

// openNetNotices subscribes to the link and address groups of the
// namespace of the calling thread.
func openNetNotices() (*netNotices, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	groups := uint32(unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	// A non-blocking descriptor is waited on by the runtime's poller, so
	// that close ends a pending read.
	n := &netNotices{f: os.NewFile(uintptr(fd), "netlink-route"), c: make(chan struct{}, 1)}
	go n.read()
	return n, nil
}

func (n *netNotices) read() {
	defer close(n.c)
	buf := make([]byte, 32<<10)
	for {
		if _, err := n.f.Read(buf); err != nil && !errors.Is(err, unix.ENOBUFS) {
			return // closed, or broken: the watch reads on its timer instead
		}
		select {
		case n.c <- struct{}{}:
		default: // one wake-up is pending already
		}
	}
}

// notices delivers a value after a change, and is closed when no more
// will come.
func (n *netNotices) notices() <-chan struct{} { return n.c }

func (n *netNotices) close() { n.f.Close() }
