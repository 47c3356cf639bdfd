package hub

import (
	"sync/atomic"

	"github.com/khadga/khadga/proto"
	"github.com/prometheus/client_golang/prometheus"
)

// Stats is a snapshot of the hub's gauges and counters.
type Stats struct {
	Sessions    int // live sessions of this node, connected or within their resume window
	Remote      int // sessions other nodes hold (their proxies here)
	Connections int // open WebSocket connections
	Rooms       int
	Members     int // room memberships, summed over rooms

	SignalsRelayed uint64 // signals written to their target's socket
	BytesRelayed   uint64 // bytes of those signals
	Queued         uint64 // signals kept for an absent peer
	Expired        uint64 // kept signals dropped (TTL, window or overflow)
	SlowConsumers  uint64 // connections dropped: send queue full or write timed out

	Errors        map[proto.Code]uint64 // error messages sent, by code
	ResumesOK     uint64
	ResumesFailed uint64 // resume tokens that were wrong, expired or another user's
	Revoked       uint64 // sessions ended by Revoke (or a resume with a changed account)
}

// codes lists the error codes counted by Stats.Errors.
var codes = []proto.Code{
	proto.CodeBadMessage, proto.CodeTooLarge, proto.CodeUnknownType,
	proto.CodeNotInRoom, proto.CodeUnknownPeer, proto.CodeUnauthorized,
	proto.CodeRateLimited, proto.CodeUnsupportedVersion, proto.CodeRoomFull,
	proto.CodeTooManyRooms, proto.CodePeerUnavailable, proto.CodeInternal,
	proto.CodeInviteRequired, proto.CodeBadInvite, proto.CodeRevoked,
}

// counters are updated with atomics: no lock on any hot path.
type counters struct {
	sessions, conns, rooms, members atomic.Int64
	remote                          atomic.Int64 // proxies of other nodes' sessions

	signals, bytes, queued, expired, slow atomic.Uint64
	resumesOK, resumesFailed, revoked     atomic.Uint64
	errors                                [16]atomic.Uint64 // indexed like codes; last slot for unknown codes (none: TestEveryErrorCodeIsExported)
}

func (c *counters) countError(code proto.Code) {
	for i, k := range codes {
		if k == code {
			c.errors[i].Add(1)
			return
		}
	}
	c.errors[len(c.errors)-1].Add(1)
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	c := &h.stats
	st := Stats{
		Sessions:       int(c.sessions.Load()),
		Remote:         int(c.remote.Load()),
		Connections:    int(c.conns.Load()),
		Rooms:          int(c.rooms.Load()),
		Members:        int(c.members.Load()),
		SignalsRelayed: c.signals.Load(),
		BytesRelayed:   c.bytes.Load(),
		Queued:         c.queued.Load(),
		Expired:        c.expired.Load(),
		SlowConsumers:  c.slow.Load(),
		ResumesOK:      c.resumesOK.Load(),
		ResumesFailed:  c.resumesFailed.Load(),
		Revoked:        c.revoked.Load(),
		Errors:         make(map[proto.Code]uint64),
	}
	for i, k := range codes {
		if n := c.errors[i].Load(); n > 0 {
			st.Errors[k] = n
		}
	}
	return st
}

// collector exports Stats to Prometheus at scrape time, so that the hot
// paths touch only their atomics.
type collector struct{ h *Hub }

var (
	descSessions = prometheus.NewDesc("khadga_hub_sessions", "Live sessions, connected or within their resume window.", nil, nil)
	descConns    = prometheus.NewDesc("khadga_hub_connections", "Open WebSocket connections.", nil, nil)
	descRemote   = prometheus.NewDesc("khadga_hub_remote_sessions", "Sessions other nodes of a cluster hold, known here as proxies.", nil, nil)
	descRooms    = prometheus.NewDesc("khadga_hub_rooms", "Rooms with members.", nil, nil)
	descMembers  = prometheus.NewDesc("khadga_hub_room_members", "Room memberships summed over rooms.", nil, nil)
	descSignals  = prometheus.NewDesc("khadga_hub_signals_relayed_total", "Signals written to their target.", nil, nil)
	descBytes    = prometheus.NewDesc("khadga_hub_signal_bytes_relayed_total", "Bytes of relayed signals.", nil, nil)
	descQueued   = prometheus.NewDesc("khadga_hub_signals_queued_total", "Signals kept for a peer whose socket was away.", nil, nil)
	descExpired  = prometheus.NewDesc("khadga_hub_signals_expired_total", "Kept signals dropped before their peer came back.", nil, nil)
	descSlow     = prometheus.NewDesc("khadga_hub_slow_consumers_total", "Connections dropped because their send queue filled.", nil, nil)
	descErrors   = prometheus.NewDesc("khadga_hub_errors_total", "Error messages sent to clients, by code.", []string{"code"}, nil)
	descResumes  = prometheus.NewDesc("khadga_hub_resumes_total", "Resume attempts, by result.", []string{"result"}, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descConns, descRemote, descRooms, descMembers,
		descSignals, descBytes, descQueued, descExpired, descSlow, descErrors, descResumes} {
		ch <- d
	}
}

func (col collector) Collect(ch chan<- prometheus.Metric) {
	st := col.h.Stats()
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descSessions, st.Sessions)
	gauge(descConns, st.Connections)
	gauge(descRemote, st.Remote)
	gauge(descRooms, st.Rooms)
	gauge(descMembers, st.Members)
	counter(descSignals, st.SignalsRelayed)
	counter(descBytes, st.BytesRelayed)
	counter(descQueued, st.Queued)
	counter(descExpired, st.Expired)
	counter(descSlow, st.SlowConsumers)
	for _, k := range codes {
		counter(descErrors, st.Errors[k], string(k))
	}
	counter(descResumes, st.ResumesOK, "ok")
	counter(descResumes, st.ResumesFailed, "failed")
}
