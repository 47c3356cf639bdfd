package hub

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/khadga/khadga/proto"
	"github.com/prometheus/client_golang/prometheus"
)

// Identity is who an authenticated connection belongs to, as the token says.
type Identity struct {
	User string
	Role string
	// Rooms are the room grants from the token; empty means any room.
	Rooms []string
	// Login is the sign-in the token was issued for (its refresh-token
	// family), empty for a bot token, so that signing out ends that
	// sign-in's sessions alone (Hub.CloseLogin).
	Login string
	// KeyID names the key that signed the token, so that retiring a key can
	// end the sessions it let in (Hub.Revoke).
	KeyID string
	// Checked is when the credentials were checked against the store (the
	// account exists and is enabled, the sign-in is alive), by the clock
	// of this process. A revocation the hub ran since then that matches
	// the session ends it as soon as it attaches (revocations.go). Zero
	// skips that check.
	Checked time.Time
}

// ConnOptions are the per-connection choices of the client.
type ConnOptions struct {
	// ResumeToken is the token of a welcome the client got earlier; it may
	// be empty.
	ResumeToken string
	// Presence asks for the presence feed on this connection. A client that
	// does not show who is online (a bot, the benchmark) leaves it off and
	// saves the server O(N) work per change.
	Presence bool
}

// Config configures a Hub. Zero values take the defaults named on each field.
type Config struct {
	// Logger receives the hub's logs; nil discards them.
	Logger *slog.Logger
	// ResumeWindow is how long a session whose socket dropped waits for a
	// resume before it ends (default 30s).
	ResumeWindow time.Duration
	// ReadLimit caps one incoming message (default proto.MaxMessageSize).
	ReadLimit int64
	// SendQueue and SendQueueBytes bound each connection's outgoing queue
	// (defaults 256 messages, 1 MiB). A signal that finds the queue at
	// either limit is refused and its sender told (peer_unavailable);
	// other messages may take it to twice the limits, beyond which the
	// client is not reading and its connection is dropped as a slow
	// consumer.
	SendQueue      int
	SendQueueBytes int
	// WriteWait bounds one batch of socket writes (default 10s).
	WriteWait time.Duration
	// PongWait is how long a connection may stay silent (no message, no
	// pong) before it is dropped (default 60s).
	PongWait time.Duration
	// PingPeriod is how long a connection may stay silent before the hub
	// pings it (default 9/10 of PongWait). It must be below PongWait.
	PingPeriod time.Duration
	// MessageRate and MessageBurst limit incoming messages per connection
	// (default 200/s, burst 400). Over the limit a message gets rate_limited.
	MessageRate  float64
	MessageBurst int
	// SignalBytesRate and SignalBurstBytes limit the bytes of signal data
	// each connection sends (defaults 512 KiB/s, burst 2 MiB), so that the
	// sender of a flood is refused before its target's queue fills.
	SignalBytesRate  int
	SignalBurstBytes int
	// MaxConnsPerUser caps one user's open connections (default 32), and
	// its sessions: a session outlives its socket by ResumeWindow, and a
	// new one past the cap ends the user's oldest session waiting for a
	// resume. With a Delivery of a cluster, it counts the user's
	// connections and sessions on every node (clusterlimit.go).
	MaxConnsPerUser int
	// AbuseLimit is how many protocol errors (bad, oversized, unknown or
	// rate limited messages) a connection may cause in a burst before it is
	// closed with 1008; the allowance refills at one per second (default 20).
	AbuseLimit int
	// MaxRoomsPerSession caps the rooms one session is in (default 16).
	MaxRoomsPerSession int
	// MaxRoomMembers caps the people in one room (default 1000). A user's
	// sessions count once, so that one user cannot fill a room.
	MaxRoomMembers int
	// RoomPolicy, if set, is asked before a session joins a room it is not
	// in, with the join's invite (empty without one). It returns the
	// room's own cap on people (0, or more than MaxRoomMembers, means
	// MaxRoomMembers), or an error refusing the join: a
	// *proto.ProtocolError is answered with its code and message (such as
	// invite_required), anything else with internal. It runs on the
	// joining connection's reader with no hub lock held, so it may read a
	// store; it must not wait on other connections.
	RoomPolicy func(room string, id Identity, invite string) (maxMembers int, err error)
	// AbsentQueue caps the messages kept for a session whose socket dropped
	// (default 64); AbsentQueueTTL is how long one is kept (default the
	// resume window). AbsentQueue must not exceed SendQueue.
	AbsentQueue    int
	AbsentQueueTTL time.Duration
	// PresenceScope is whom a presence subscriber sees: proto.ScopeGlobal
	// (default: everyone online, the first MaxPresenceList by name and the
	// rest as a count) or proto.ScopeRooms (the peers in rooms it shares).
	PresenceScope string
	// PresenceInterval coalesces presence changes (default 250ms).
	PresenceInterval time.Duration
	// MaxPresenceList caps the peers a presence list shows (default 100):
	// the global window, or one subscriber's rooms-scope list.
	MaxPresenceList int
	// ICEServers returns STUN/TURN servers with fresh credentials, and when
	// they expire, for each welcome (also on resume). Nil sends [].
	ICEServers func(user string) ([]proto.ICEServer, time.Time)
	// Registerer, if set, receives the hub's Prometheus metrics.
	Registerer prometheus.Registerer
	// Delivery carries messages to other sessions; nil means
	// LocalDelivery, this hub's sessions alone.
	Delivery Delivery
}

// Defaults.
const (
	DefaultResumeWindow       = 30 * time.Second
	DefaultSendQueue          = 256
	DefaultSendQueueBytes     = 1 << 20
	DefaultSignalBytesRate    = 512 << 10
	DefaultSignalBurstBytes   = 2 << 20
	DefaultMaxConnsPerUser    = 32
	DefaultWriteWait          = 10 * time.Second
	DefaultPongWait           = 60 * time.Second
	DefaultMessageRate        = 200
	DefaultMessageBurst       = 400
	DefaultAbuseLimit         = 20
	DefaultMaxRoomsPerSession = 16
	DefaultMaxRoomMembers     = 1000
	DefaultAbsentQueue        = 64
	DefaultPresenceInterval   = 250 * time.Millisecond
	DefaultMaxPresenceList    = 100
)

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	setDur(&c.ResumeWindow, DefaultResumeWindow)
	if c.ReadLimit == 0 {
		c.ReadLimit = proto.MaxMessageSize
	}
	setInt(&c.SendQueue, DefaultSendQueue)
	setInt(&c.SendQueueBytes, DefaultSendQueueBytes)
	setInt(&c.SignalBytesRate, DefaultSignalBytesRate)
	setInt(&c.SignalBurstBytes, DefaultSignalBurstBytes)
	setInt(&c.MaxConnsPerUser, DefaultMaxConnsPerUser)
	setDur(&c.WriteWait, DefaultWriteWait)
	setDur(&c.PongWait, DefaultPongWait)
	setDur(&c.PingPeriod, c.PongWait*9/10)
	if c.MessageRate == 0 {
		c.MessageRate = DefaultMessageRate
	}
	setInt(&c.MessageBurst, DefaultMessageBurst)
	setInt(&c.AbuseLimit, DefaultAbuseLimit)
	setInt(&c.MaxRoomsPerSession, DefaultMaxRoomsPerSession)
	setInt(&c.MaxRoomMembers, DefaultMaxRoomMembers)
	setInt(&c.AbsentQueue, DefaultAbsentQueue)
	setDur(&c.AbsentQueueTTL, c.ResumeWindow)
	if c.PresenceScope == "" {
		c.PresenceScope = proto.ScopeGlobal
	}
	setDur(&c.PresenceInterval, DefaultPresenceInterval)
	setInt(&c.MaxPresenceList, DefaultMaxPresenceList)
	return c
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func setInt(n *int, def int) {
	if *n == 0 {
		*n = def
	}
}

// validate reports every problem of a defaulted config at once.
func (c Config) validate() error {
	var errs []error
	positive := func(name string, ok bool) {
		if !ok {
			errs = append(errs, fmt.Errorf("hub: %s must be positive", name))
		}
	}
	positive("ResumeWindow", c.ResumeWindow > 0)
	positive("ReadLimit", c.ReadLimit > 0)
	positive("SendQueue", c.SendQueue > 0)
	positive("SendQueueBytes", c.SendQueueBytes > 0)
	positive("SignalBytesRate", c.SignalBytesRate > 0)
	positive("SignalBurstBytes", c.SignalBurstBytes > 0)
	positive("MaxConnsPerUser", c.MaxConnsPerUser > 0)
	positive("WriteWait", c.WriteWait > 0)
	positive("PongWait", c.PongWait > 0)
	positive("PingPeriod", c.PingPeriod > 0)
	positive("MessageRate", c.MessageRate > 0)
	positive("MessageBurst", c.MessageBurst > 0)
	positive("AbuseLimit", c.AbuseLimit > 0)
	positive("MaxRoomsPerSession", c.MaxRoomsPerSession > 0)
	positive("MaxRoomMembers", c.MaxRoomMembers > 0)
	positive("AbsentQueue", c.AbsentQueue > 0)
	positive("AbsentQueueTTL", c.AbsentQueueTTL > 0)
	positive("PresenceInterval", c.PresenceInterval > 0)
	positive("MaxPresenceList", c.MaxPresenceList > 0)
	if c.PresenceScope != proto.ScopeGlobal && c.PresenceScope != proto.ScopeRooms {
		errs = append(errs, fmt.Errorf("hub: PresenceScope must be %q or %q, not %q", proto.ScopeGlobal, proto.ScopeRooms, c.PresenceScope))
	}
	if c.PingPeriod >= c.PongWait {
		errs = append(errs, fmt.Errorf("hub: PingPeriod (%v) must be below PongWait (%v)", c.PingPeriod, c.PongWait))
	}
	if int64(c.SignalBurstBytes) < c.ReadLimit {
		errs = append(errs, fmt.Errorf("hub: SignalBurstBytes (%d) must be at least ReadLimit (%d), or the largest signals are never allowed", c.SignalBurstBytes, c.ReadLimit))
	}
	if c.AbsentQueue > c.SendQueue {
		errs = append(errs, fmt.Errorf("hub: AbsentQueue (%d) must not exceed SendQueue (%d)", c.AbsentQueue, c.SendQueue))
	}
	return errors.Join(errs...)
}
