package client

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// netNotices hears from the kernel (a route netlink socket) whenever a
// link, an address or a route comes or goes, so that the watch reads the host's
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
	groups := uint32(unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR |
		unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE)
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

// hasDefaultRoute reports whether the calling thread's network namespace
// has a default route that is up (IPv4 or IPv6): a host that has its new
// address but not yet its route (an interface comes up in steps) cannot
// reach anyone from it, and a restart of ICE then would gather nothing
// but host candidates. /proc/thread-self, not /proc/self: a thread may be
// in a namespace of its own (the tests' network lab).
func hasDefaultRoute() bool {
	// IPv4: Iface Destination Gateway Flags ... Mask, in hex.
	if defaultIn("/proc/thread-self/net/route", func(f []string) bool {
		return len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" && up(f[3])
	}) {
		return true
	}
	// IPv6: dest prefixlen src srclen nexthop metric refcnt use flags iface.
	return defaultIn("/proc/thread-self/net/ipv6_route", func(f []string) bool {
		return len(f) > 9 && f[1] == "00" && strings.Trim(f[0], "0") == "" && up(f[8]) && f[9] != "lo"
	})
}

// up reports whether route flags (hex) say RTF_UP and not RTF_REJECT (the
// kernel's unreachable default routes).
func up(hex string) bool {
	flags, err := strconv.ParseUint(hex, 16, 32)
	return err == nil && flags&unix.RTF_UP != 0 && flags&unix.RTF_REJECT == 0
}

func defaultIn(path string, isDefault func([]string) bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if isDefault(strings.Fields(sc.Text())) {
			return true
		}
	}
	return false
}
