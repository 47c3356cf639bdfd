package hub

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/khadga/khadga/proto"
)

// Message handles one message from the connection's client. It runs on the
// connection's reader (wsconn.Handler). b is reused after it returns, and
// m.Data may point into it: nothing may keep m.Data.
func (c *conn) Message(text bool, b []byte) {
	now := time.Now()
	c.busy.Store(now.UnixNano())
	defer c.busy.Store(0)
	if !text {
		c.protocolError("", proto.CodeBadMessage, "binary frames are not accepted; send one JSON object per text frame", now)
		return
	}
	var msg proto.Message
	m := &msg
	if err := decode(b, int(c.h.cfg.ReadLimit), m); err != nil {
		var pe *proto.ProtocolError
		if errors.As(err, &pe) {
			c.protocolError(pe.ID, pe.Code, pe.Message, now)
		} else {
			c.protocolError("", proto.CodeBadMessage, "invalid message", now)
		}
		return
	}
	if !c.allow(now) {
		c.protocolError(m.ID, proto.CodeRateLimited, fmt.Sprintf("over %g messages per second", c.h.cfg.MessageRate), now)
		return
	}
	if err := m.Validate(); err != nil {
		var pe *proto.ProtocolError
		if errors.As(err, &pe) {
			c.protocolError(m.ID, pe.Code, pe.Message, now)
		} else {
			c.protocolError(m.ID, proto.CodeBadMessage, "invalid message", now)
		}
		return
	}
	switch m.Type {
	case proto.TypeSignal:
		if !c.allowBytes(len(m.Data), now) {
			c.protocolError(m.ID, proto.CodeRateLimited,
				fmt.Sprintf("over %d bytes of signals per second", c.h.cfg.SignalBytesRate), now)
			return
		}
		c.h.forward(c, m)
	case proto.TypeJoin, proto.TypeLeave:
		if !c.allowRoomChange(now) {
			c.protocolError(m.ID, proto.CodeRateLimited,
				fmt.Sprintf("over %d joins and leaves per second", roomChangeRate), now)
			return
		}
		if m.Type == proto.TypeJoin {
			c.h.join(c, m)
		} else {
			c.h.leave(c, m)
		}
	case proto.TypePing:
		c.send(refMsg(proto.TypePong, m.ID))
	}
}

// TooLarge answers a message over the read limit; the transport then closes
// the connection with 1009 (wsconn.Handler).
func (c *conn) TooLarge(int64) {
	c.h.stats.countError(proto.CodeTooLarge)
	c.h.closes.Log(slog.LevelInfo, "hub: closing a connection: a message over the read limit",
		c.whose(), slog.Int64("read_limit", c.h.cfg.ReadLimit))
	c.send(errorMsg("", proto.CodeTooLarge, fmt.Sprintf("message is over the %d byte limit", c.h.cfg.ReadLimit)))
}

// allow takes a token from the message-rate bucket.
func (c *conn) allow(now time.Time) bool {
	return take(&c.tokens, &c.tokensAt, now, c.h.cfg.MessageRate, float64(c.h.cfg.MessageBurst), 1)
}

// allowBytes takes n bytes from the signal byte-rate bucket: a sender pays
// for what it sends, so that flooding a peer with large signals is refused
// at the sender instead of filling the peer's queue.
func (c *conn) allowBytes(n int, now time.Time) bool {
	return take(&c.bytes, &c.bytesAt, now, float64(c.h.cfg.SignalBytesRate), float64(c.h.cfg.SignalBurstBytes), float64(n))
}

// allowRoomChange takes a join or a leave from its own bucket. Each one
// reaches every member of the room (peer-joined, peer-left), uncoalesced,
// so without a bound of its own one user's sessions flapping in and out
// of a room at the message rate would fill every member's queue, and
// drop members on slower links as slow consumers.
func (c *conn) allowRoomChange(now time.Time) bool {
	return take(&c.rooms, &c.roomsAt, now, roomChangeRate, c.h.roomChangeBurst(), 1)
}

// roomChangeRate is the joins and leaves a connection may make per
// second once it has spent its burst (roomChangeBurst).
const roomChangeRate = 2

// roomChangeBurst lets a connection leave and join again every room it
// may be in at once, as a client that reconnects does.
func (h *Hub) roomChangeBurst() float64 { return float64(2 * h.cfg.MaxRoomsPerSession) }

// take is a token bucket: it refills at rate per second up to burst, and
// takes n tokens if it has them.
func take(tokens *float64, at *int64, now time.Time, rate, burst, n float64) bool {
	t := now.UnixNano()
	if elapsed := t - *at; elapsed > 0 {
		*tokens = min(burst, *tokens+float64(elapsed)/1e9*rate)
		*at = t
	}
	if *tokens < n {
		return false
	}
	*tokens -= n
	return true
}

// protocolError answers a bad message. Each one spends the connection's
// abuse allowance; when that runs out the connection is closed with 1008.
func (c *conn) protocolError(ref string, code proto.Code, text string, now time.Time) {
	c.h.stats.countError(code)
	if !take(&c.abuse, &c.abuseAt, now, 1, float64(c.h.cfg.AbuseLimit), 1) {
		c.h.closes.Log(slog.LevelInfo, "hub: closing a connection: too many bad messages",
			c.whose(), slog.String("last_code", string(code)))
		c.closeWith(proto.NewError(ref, code, "%s", text), 1008, "too many bad messages")
		return
	}
	c.send(errorMsg(ref, code, text))
}

// replyError answers a well-formed request that cannot be done.
func (c *conn) replyError(ref string, code proto.Code, format string, args ...any) {
	c.h.stats.countError(code)
	c.send(errorMsg(ref, code, fmt.Sprintf(format, args...)))
}

func errorMsg(ref string, code proto.Code, text string) []byte {
	b, _ := proto.NewError(ref, code, "%s", text).Encode()
	return b
}

// refMsg encodes a data-less message answering ref (ack, pong).
func refMsg(typ, ref string) []byte {
	m := proto.Message{Type: typ, Ref: ref}
	b, _ := m.Encode()
	return b
}
