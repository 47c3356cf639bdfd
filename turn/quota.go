package turn

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// reserveTTL bounds how long a reservation waits for pion to report the
// allocation it was made for. Pion creates the allocation right after
// asking the QuotaHandler, on the same goroutine, and reports a failure
// through OnAllocationError; the lapse only guards against a path that
// reports neither.
const reserveTTL = 10 * time.Second

// quotas counts allocations per user and in total, and peer addresses and
// channels per allocation, from pion's allocation, permission and channel
// events.
//
// Pion asks the QuotaHandler before it creates an allocation and reports
// the creation afterwards. Counting only at the report let concurrent
// requests of one user all pass the check (a quota of 2 gave 3 allocations
// with 400 TCP connections), so the QuotaHandler reserves: it counts the
// allocation at once, under the lock that checked the quota, and the
// report turns the reservation into the allocation, or the error releases
// it. Reservations are keyed by the client's transport address, which is
// the allocation's (one allocation per 5-tuple).
type quotas struct {
	userMax, totalMax, permMax, chanMax int // negative: no cap
	metrics                             *metrics
	now                                 func() time.Time

	mu       sync.Mutex
	total    int                                // allocations and reservations
	perUser  map[string]int                     // user -> allocations and reservations
	reserved map[string]reservation             // client address -> a reservation
	perms    map[string]map[netip.Addr]struct{} // client address -> peers
	chans    map[string]map[uint16]struct{}     // client address -> channel numbers
}

type reservation struct {
	user    string
	expires time.Time
}

func newQuotas(cfg Config, m *metrics) *quotas {
	return &quotas{
		userMax:  cfg.UserQuota,
		totalMax: cfg.TotalQuota,
		permMax:  cfg.PermissionQuota,
		chanMax:  cfg.ChannelQuota,
		metrics:  m,
		now:      cfg.now,
		perUser:  make(map[string]int),
		reserved: make(map[string]reservation),
		perms:    make(map[string]map[netip.Addr]struct{}),
		chans:    make(map[string]map[uint16]struct{}),
	}
}

// addrKey names a client transport address (one allocation per address and
// listener).
func addrKey(a net.Addr) string { return a.Network() + "|" + a.String() }

// allowAllocation is pion's QuotaHandler: it checks the quotas and, when
// they allow one more, reserves it for src. The user is the part of the
// REST username after the expiry, so fresh credentials do not reset the
// count.
func (q *quotas) allowAllocation(username, _ string, src net.Addr) bool {
	user := userOf(username)
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lapse(now)
	switch {
	case q.totalMax >= 0 && q.total >= q.totalMax:
		q.metrics.quota.WithLabelValues("total").Inc()
		return false
	case q.userMax >= 0 && q.perUser[user] >= q.userMax:
		q.metrics.quota.WithLabelValues("user").Inc()
		return false
	}
	k := addrKey(src)
	if old, ok := q.reserved[k]; ok {
		q.release(old.user) // an earlier request of this 5-tuple that never finished
	}
	q.reserved[k] = reservation{user: user, expires: now.Add(reserveTTL)}
	q.total++
	q.perUser[user]++
	return true
}

// allocationCreated turns src's reservation into the allocation (or counts
// it, if there was none).
func (q *quotas) allocationCreated(username string, src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := addrKey(src)
	if _, ok := q.reserved[k]; ok {
		delete(q.reserved, k)
		return
	}
	q.total++
	q.perUser[userOf(username)]++
}

// allocationFailed releases src's reservation, if any: pion reported an
// error for its request after the quota check (no relay port, say).
func (q *quotas) allocationFailed(src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := addrKey(src)
	if r, ok := q.reserved[k]; ok {
		delete(q.reserved, k)
		q.release(r.user)
	}
}

func (q *quotas) allocationDeleted(username string, src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.release(userOf(username))
	delete(q.perms, addrKey(src))
	delete(q.chans, addrKey(src))
}

// release uncounts one allocation or reservation of user. q.mu is held.
func (q *quotas) release(user string) {
	q.total--
	if q.perUser[user]--; q.perUser[user] <= 0 {
		delete(q.perUser, user)
	}
}

// lapse releases reservations that pion never reported on. q.mu is held.
func (q *quotas) lapse(now time.Time) {
	for k, r := range q.reserved {
		if now.After(r.expires) {
			delete(q.reserved, k)
			q.release(r.user)
		}
	}
}

// allowPermission reports whether the allocation of src may add peer. A
// peer it already has is a refresh and always allowed.
func (q *quotas) allowPermission(src net.Addr, peer netip.Addr) bool {
	if q.permMax < 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return allowIn(q, q.perms[addrKey(src)], peer, q.permMax, "permissions")
}

// allowChannel reports whether the allocation of src may bind channel. A
// channel it already has is a refresh and always allowed. Pion keeps up
// to 16,384 channels an allocation, each with a timer, and looks through
// them in turn for every datagram it relays; the permission quota does
// not bound them, since channels to one peer IP need one permission.
func (q *quotas) allowChannel(src net.Addr, channel uint16) bool {
	if q.chanMax < 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return allowIn(q, q.chans[addrKey(src)], channel, q.chanMax, "channels")
}

// allowIn reports whether k may join set, which holds up to limit: one it
// holds already always may. A refusal is counted under quota. q.mu is
// held.
func allowIn[K comparable](q *quotas, set map[K]struct{}, k K, limit int, quota string) bool {
	if _, ok := set[k]; ok || len(set) < limit {
		return true
	}
	q.metrics.quota.WithLabelValues(quota).Inc()
	return false
}

// channelBound records that the allocation of src bound channel (on) or
// lost it.
func (q *quotas) channelBound(src net.Addr, channel uint16, on bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := addrKey(src)
	set := q.chans[k]
	if on {
		if set == nil {
			set = make(map[uint16]struct{})
			q.chans[k] = set
		}
		set[channel] = struct{}{}
		return
	}
	delete(set, channel)
	if len(set) == 0 {
		delete(q.chans, k)
	}
}

func (q *quotas) permissionCreated(src net.Addr, peer net.IP) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	k := addrKey(src)
	if q.perms[k] == nil {
		q.perms[k] = make(map[netip.Addr]struct{})
	}
	q.perms[k][ip.Unmap()] = struct{}{}
}

func (q *quotas) permissionDeleted(src net.Addr, peer net.IP) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	k := addrKey(src)
	if set := q.perms[k]; set != nil {
		delete(set, ip.Unmap())
		if len(set) == 0 {
			delete(q.perms, k)
		}
	}
}

// reset forgets everything, when the server closes: pion closes its
// allocations then without reporting each one.
func (q *quotas) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.total = 0
	clear(q.perUser)
	clear(q.reserved)
	clear(q.perms)
	clear(q.chans)
}
