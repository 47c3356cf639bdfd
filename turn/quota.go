package turn

import (
	"net"
	"net/netip"
	"sync"
)

// quotas counts allocations per user and in total, and peer addresses per
// allocation, from pion's allocation and permission events.
//
// Pion asks the QuotaHandler before it creates an allocation and reports
// the creation afterwards, so two allocations of one user handled at the
// same instant on different sockets can both pass: a quota may be exceeded
// by at most one allocation per UDP socket, never more.
type quotas struct {
	userMax, totalMax, permMax int // negative: no cap
	metrics                    *metrics

	mu      sync.Mutex
	total   int
	perUser map[string]int                     // user -> open allocations
	perms   map[string]map[netip.Addr]struct{} // client address -> peers
}

func newQuotas(cfg Config, m *metrics) *quotas {
	return &quotas{
		userMax:  cfg.UserQuota,
		totalMax: cfg.TotalQuota,
		permMax:  cfg.PermissionQuota,
		metrics:  m,
		perUser:  make(map[string]int),
		perms:    make(map[string]map[netip.Addr]struct{}),
	}
}

// addrKey names a client transport address (one allocation per address and
// listener).
func addrKey(a net.Addr) string { return a.Network() + "|" + a.String() }

// allowAllocation is pion's QuotaHandler. The user is the part of the REST
// username after the expiry, so fresh credentials do not reset the count.
func (q *quotas) allowAllocation(username, _ string, _ net.Addr) bool {
	user := userOf(username)
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.totalMax >= 0 && q.total >= q.totalMax:
		q.metrics.quota.WithLabelValues("total").Inc()
		return false
	case q.userMax >= 0 && q.perUser[user] >= q.userMax:
		q.metrics.quota.WithLabelValues("user").Inc()
		return false
	}
	return true
}

func (q *quotas) allocationCreated(username string) {
	user := userOf(username)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.total++
	q.perUser[user]++
}

func (q *quotas) allocationDeleted(username string, src net.Addr) {
	user := userOf(username)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.total--
	if q.perUser[user]--; q.perUser[user] <= 0 {
		delete(q.perUser, user)
	}
	delete(q.perms, addrKey(src))
}

// allowPermission reports whether the allocation of src may add peer. A
// peer it already has is a refresh and always allowed.
func (q *quotas) allowPermission(src net.Addr, peer netip.Addr) bool {
	if q.permMax < 0 {
		return true
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	set := q.perms[addrKey(src)]
	if _, ok := set[peer]; ok || len(set) < q.permMax {
		return true
	}
	q.metrics.quota.WithLabelValues("permissions").Inc()
	return false
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
	clear(q.perms)
}
