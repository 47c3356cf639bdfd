package client

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/proto"
)

// A laptop that moves from Wi-Fi to a phone's hotspot loses the address
// its calls and its signaling socket use. ICE finds each path dead only
// after iceDisconnectedTimeout without answers, and restarts a second
// later; a browser hears of the move from the system ('online') and the
// SDK restarts at once. The Go client watches the host's addresses: on
// Linux it reads them when the kernel tells of a change (netnotice_linux.go),
// elsewhere every netWatchEvery (500 ms). It acts when one is gone and the
// new set has held for one more read (an interface goes, another comes and
// gets its address and routes in steps): it checks its signaling socket
// and restarts ICE with every peer that was connected.

// netWatchEvery is how often the client reads the host's addresses
// (WithNetworkWatch) where the system does not tell of changes. A read
// lists every interface's addresses, cheap on a laptop, more on a host
// with hundreds of container interfaces: pass a longer period there, or 0.
const netWatchEvery = 500 * time.Millisecond

// netSettle is how long after the kernel's first notice of a change the
// addresses are read, and then read again to see that a new set held. A
// notice only arms the read: a host whose containers come and go all the
// time costs at most one read per netSettle.
const netSettle = 150 * time.Millisecond

// addrWatch decides, read by read, when the host's addresses changed.
type addrWatch struct {
	acted string // the set last acted on (or found at the start)
	last  string // the set of the last read
}

// saw takes the set of one read and reports whether to act on it: it
// held since the last read, has an address to reach anyone from (a host
// between networks has none), and lacks one of the set acted on. A set
// that only adds addresses is taken without acting: the paths in use
// still work, and IPv6 hosts add a temporary address every day or so.
func (w *addrWatch) saw(set string) bool {
	if set != w.last {
		w.last = set
		return false
	}
	if set == w.acted || set == "" {
		return false
	}
	now := strings.Fields(set)
	lost := slices.ContainsFunc(strings.Fields(w.acted), func(a string) bool { return !slices.Contains(now, a) })
	w.acted = set
	return lost
}

// hostAddrs is the host's addresses that ICE could use, sorted and joined:
// neither loopback nor link-local; none while the host has no default
// route (on Linux), as between two networks: its new address without a
// route yet (an interface comes up in steps, the route last) reaches
// nobody, and a restart of ICE then would find no path.
func hostAddrs() (string, error) {
	if !hasDefaultRoute() {
		return "", nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	var out []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ipn.IP.String())
	}
	slices.Sort(out)
	return strings.Join(out, " "), nil
}

// watchNetwork watches the host's addresses until the client closes, and
// calls networkChanged when they change.
func (c *Client) watchNetwork() {
	defer c.wg.Done()
	// Subscribed before the first read, so that no change falls between.
	var notices <-chan struct{}
	if n, err := openNetNotices(); err != nil {
		c.log.Debug("reading the host's addresses on a timer", slog.Any("err", err))
	} else {
		defer n.close()
		notices = n.notices()
	}
	first, err := hostAddrs()
	if err != nil {
		c.log.Info("not watching the network: cannot read the host's addresses", slog.Any("err", err))
		return
	}
	w := addrWatch{acted: first, last: first}
	w.run(c.ctx, notices, c.opts.netWatchEvery, hostAddrs, c.networkChanged)
}

// run reads the addresses with read when notices tells of a change (after
// netSettle), or every `every` if there are no notices or they stop, and
// calls act with the new set when w says to.
func (w *addrWatch) run(ctx context.Context, notices <-chan struct{}, every time.Duration, read func() (string, error), act func(string)) {
	var ticker *time.Ticker
	var tick <-chan time.Time
	poll := func() {
		ticker = time.NewTicker(every)
		tick = ticker.C
	}
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	if notices == nil {
		poll()
	}
	settle := time.NewTimer(netSettle)
	settle.Stop()
	defer settle.Stop()
	armed := false
	check := func() (fresh bool) {
		set, err := read()
		if err != nil {
			return false
		}
		fresh = set != w.last
		if w.saw(set) {
			act(set)
		}
		return fresh
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			check()
		case _, ok := <-notices:
			if !ok {
				notices = nil // the kernel's notices stopped: read on the timer
				poll()
			} else if !armed {
				settle.Reset(netSettle)
				armed = true
			}
		case <-settle.C:
			// A set not seen before is read once more, to see it held.
			armed = check()
			if armed {
				settle.Reset(netSettle)
			}
		}
	}
}

// networkChanged restarts ICE with every peer that was connected, and
// tells the application which. The signaling socket is dropped at once if
// its address is gone (it died with it, silently), or else checked now.
func (c *Client) networkChanged(set string) {
	c.mu.Lock()
	peers := make([]*peer, 0, len(c.peers))
	for _, p := range c.peers {
		peers = append(peers, p)
	}
	ws := c.ws
	c.mu.Unlock()
	if ws != nil && gone(set, localIP(ws.NetConn())) {
		c.log.Info("the signaling connection's address is gone: reconnecting")
		ws.Close()
	} else {
		c.probeSignaling()
	}
	var restarted []proto.Member
	for _, p := range peers {
		if p.wasConnected() {
			restarted = append(restarted, p.Member())
			p.enqueue(p.networkChanged)
		}
	}
	c.log.Info("the network changed: checking the signaling connection, restarting ICE", slog.Int("peers", len(restarted)))
	c.emitClient(&NetworkChanged{Peers: restarted})
}

// localIP is the address of conn's end on this host.
func localIP(conn net.Conn) net.IP {
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		return a.IP
	}
	return nil
}

// gone reports whether ip, an address the watch would list (neither
// loopback nor link-local), is not in set.
func gone(set string, ip net.IP) bool {
	if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return false
	}
	return !slices.Contains(strings.Fields(set), ip.String())
}

// wasConnected reports whether ICE had found a path to the peer: one that
// is still looking gathers on the new network anyway.
func (p *peer) wasConnected() bool {
	switch p.pc.ICEConnectionState() {
	case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted,
		webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
		return true
	}
	return false
}

// networkChanged restarts ICE (the polite side asks the other for the
// restart), not waiting for ICE to find the path gone. Restarts keep
// restartMinInterval apart: an interface that flaps gets one restart when
// it has settled, not one per change.
func (p *peer) networkChanged() {
	p.netChanged = time.Now()
	p.restartForNetwork()
}

func (p *peer) restartForNetwork() {
	if p.netRestartDue || !p.wasConnected() || p.lastRestart.After(p.netChanged) {
		return // one is due, or there is nothing to restart, or it restarted since
	}
	if wait := restartMinInterval - time.Since(p.lastRestart); wait > 0 {
		p.netRestartDue = true
		time.AfterFunc(wait, func() {
			p.enqueue(func() {
				p.netRestartDue = false
				p.restartForNetwork()
			})
		})
		return
	}
	p.log.Info("restarting ICE: the network changed")
	p.lastRestart = time.Now() // the polite side's request too
	p.negotiate(true)
}
