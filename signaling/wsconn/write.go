package wsconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// maxControlPayload is the largest payload of a control frame.
const maxControlPayload = 125

// writeChunk is the most one socket write carries, so that WriteWait
// bounds the time to move one chunk, not a whole large batch: a client on
// a slow link that keeps reading is not taken for a slow consumer.
const writeChunk = 64 << 10

// writerLinger is how long the writer waits for more to write before it
// exits: between one and two of these periods of quiet (a ticker, so that
// no timer is reset per batch). On a busy connection a goroutine per
// batch cost more than the wake-up: new goroutines start with a stack
// sized from the average the runtime last saw, small once idle readers
// wait on 2 KiB stacks, and the writer grew its stack every time. Short,
// because a presence burst reaches every connection at once: with 100 ms
// the writers of 10,000 idle connections overlapped and their stacks
// raised the idle RSS with presence on from 7.0 to 9.4-9.9 KiB per
// connection. An idle connection holds no writer once this has passed.
const writerLinger = 25 * time.Millisecond

// startWriterLocked starts the writer, or wakes it if it waits for more,
// unless the connection is dead. c.mu is held.
func (c *Conn[M]) startWriterLocked() {
	switch {
	case c.state == stateDead:
	case c.writing:
		c.wakeWriterLocked()
	default:
		c.writing = true
		c.writerStarts++
		c.writer.Add(1)
		go c.writeLoop()
	}
}

// wakeWriterLocked wakes a writer that lingers. c.mu is held. The wake
// channel has room for the one send it ever gets: c.wake is cleared with
// it.
func (c *Conn[M]) wakeWriterLocked() {
	if c.wake != nil {
		c.wake <- struct{}{}
		c.wake = nil
	}
}

// batch is what the writer takes from the connection in one go.
type batch[M Message] struct {
	pong    []byte
	hasPong bool
	ping    bool
	msgs    []M
	close   []byte // nil: no close frame
}

// writeLoop writes what is queued, a batch at a time. When nothing is
// left it lingers for writerLinger and exits if nothing came; it exits at
// once after a close frame, or once the connection is dead.
func (c *Conn[M]) writeLoop() {
	defer c.writer.Done()
	var tick *time.Ticker  // made at the first linger: no timer to reset per batch
	var wake chan struct{} // made at the first linger, kept while the writer runs
	busy := false          // a batch was written since the last tick
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		b, idle, ok := c.take(&wake)
		switch {
		case !ok:
			return
		case idle:
			if tick == nil {
				tick = time.NewTicker(writerLinger)
			}
			if !c.linger(wake, tick.C, &busy) {
				return
			}
			continue
		}
		busy = true
		sent, err := c.write(&b)
		for i := range b.msgs[:sent] {
			b.msgs[i].Release()
		}
		c.keepUnsent(b.msgs[sent:])
		if b.msgs != nil {
			putQueue(b.msgs)
		}
		if err != nil {
			if isTimeout(err) && !c.dead.Load() {
				err = fmt.Errorf("%w: a write made no progress for %v", ErrSlowConsumer, c.cfg.WriteWait)
			}
			c.Kill(err)
			continue // take sees the connection dead and ends the loop
		}
		if b.close != nil {
			c.closeWritten()
		}
	}
}

// take hands the writer everything queued. With nothing queued on an
// open connection it reports idle, and sets c.wake to *wake (made if
// nil) for the writer to linger on; it reports that the writer should
// exit (and marks it gone, under the same lock) once the connection is
// dead or its close frame was taken.
func (c *Conn[M]) take(wake *chan struct{}) (b batch[M], idle, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateDead || c.closeSent {
		c.writerGoneLocked()
		return b, false, false
	}
	if len(c.q) == 0 && !c.ping && !c.hasPong && c.close == nil {
		if *wake == nil {
			*wake = make(chan struct{}, 1)
		}
		c.wake = *wake
		return b, true, true
	}
	b = batch[M]{pong: c.pong, hasPong: c.hasPong, ping: c.ping, msgs: c.q, close: c.close}
	c.pong, c.hasPong, c.ping = nil, false, false
	c.q, c.qBytes = nil, 0
	if b.close != nil {
		c.close = nil
		c.closeSent = true // nothing is written after it
	}
	c.wakeRoomLocked()
	return b, false, true
}

// linger waits until wake is signalled, or until a tick finds that
// nothing was written since the tick before (so the writer exits after
// one to two writerLinger periods of quiet). It reports whether the
// writer should go on (it was woken); if not, the writer is marked gone
// under the lock that a sender would have taken to wake it.
func (c *Conn[M]) linger(wake chan struct{}, tick <-chan time.Time, busy *bool) bool {
	for {
		select {
		case <-wake: // the sender cleared c.wake with its send
			return true
		case <-tick:
		}
		if *busy {
			*busy = false
			continue
		}
		c.mu.Lock()
		woken := c.wake != wake // a sender (or Kill) cleared it, and sent
		if !woken {
			c.wake = nil
			c.writerGoneLocked()
		}
		c.mu.Unlock()
		if woken {
			<-wake // sent under the lock, before it was cleared
		}
		return woken
	}
}

// writerGoneLocked records that the writer exits. c.mu is held.
func (c *Conn[M]) writerGoneLocked() {
	c.writing = false
	if len(c.q) == 0 {
		c.dropQueueLocked()
	}
}

// keepUnsent puts back the messages of a batch whose write failed before
// their frames were written whole, ahead of what was kept since (the
// queue at the client's close, queued after them): Result.Unsent returns
// them, so that a resumed session gets them again, or, if a resume took
// the queue over meanwhile, their senders are told (the hub's detach).
// A message the client got only part of never reached it.
func (c *Conn[M]) keepUnsent(ms []M) {
	if len(ms) == 0 {
		return
	}
	c.mu.Lock()
	c.kept = append(append(make([]M, 0, len(ms)+len(c.kept)), ms...), c.kept...)
	c.mu.Unlock()
}

// closeWritten starts the wait for the client's answer to our close frame.
func (c *Conn[M]) closeWritten() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.CloseGrace))
	if c.dead.Load() {
		_ = c.nc.SetReadDeadline(longAgo) // a Kill raced the line above
	}
}

// write encodes the batch into a pooled buffer and writes it, a chunk of
// about writeChunk bytes at a time: a batch of many small messages leaves
// in one system call, and a large batch is never copied whole. It returns
// how many of b.msgs were written whole: all of them unless err.
func (c *Conn[M]) write(b *batch[M]) (sent int, err error) {
	bp := writePool.Get().(*[]byte)
	buf := (*bp)[:0]
	used := 0 // the most of buf this batch filled
	defer func() {
		if cap(buf) <= maxPooledWrite {
			clear(buf[:max(used, len(buf))]) // the pool must not keep other people's messages
			*bp = buf[:0]
			writePool.Put(bp)
		}
	}()
	written := 0 // bytes of the batch the socket took
	flush := func() {
		if len(buf) >= writeChunk && err == nil {
			var n int
			n, err = c.writeAll(buf)
			written += n
			used, buf = max(used, len(buf)), buf[:0]
		}
	}
	if b.hasPong {
		buf = appendFrame(buf, opPong, b.pong)
	}
	if b.ping {
		buf = appendFrame(buf, opPing, nil)
	}
	for i := range b.msgs {
		buf = appendFrame(buf, opText, b.msgs[i].Payload())
		flush()
	}
	if b.close != nil {
		buf = appendFrame(buf, opClose, b.close)
	}
	if err == nil && len(buf) > 0 {
		var n int
		n, err = c.writeAll(buf)
		written += n
	}
	if err == nil {
		return len(b.msgs), nil
	}
	return wholeFrames(b, written), err
}

// wholeFrames counts the messages of b whose frames lie whole in the
// first written bytes of it (its pong and ping frames go first).
func wholeFrames[M Message](b *batch[M], written int) int {
	end := 0
	if b.hasPong {
		end += frameLen(len(b.pong))
	}
	if b.ping {
		end += frameLen(0)
	}
	for i := range b.msgs {
		if end += frameLen(len(b.msgs[i].Payload())); end > written {
			return i
		}
	}
	return len(b.msgs)
}

// frameLen is the length of appendFrame's frame of an n-byte payload.
func frameLen(n int) int {
	switch {
	case n <= 125:
		return 2 + n
	case n <= 0xffff:
		return 4 + n
	}
	return 10 + n
}

// writeAll writes buf in chunks, each with its own deadline, so that
// WriteWait bounds the time one chunk takes: a client on a slow link that
// keeps reading is not taken for a slow consumer.
//
// It returns how many bytes the socket took.
func (c *Conn[M]) writeAll(buf []byte) (int, error) {
	done := 0
	for done < len(buf) {
		n := min(len(buf)-done, writeChunk)
		if err := c.nc.SetWriteDeadline(time.Now().Add(c.cfg.WriteWait)); err != nil {
			return done, err
		}
		if c.dead.Load() {
			return done, errKilledWhileWriting // a Kill raced the deadline above
		}
		w, err := c.w.Write(buf[done : done+n])
		done += w
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

var errKilledWhileWriting = errors.New("wsconn: killed")

// appendFrame appends one unmasked, final frame (server frames are never
// masked).
func appendFrame(b []byte, op byte, payload []byte) []byte {
	n := len(payload)
	switch {
	case n <= 125:
		b = append(b, 0x80|op, byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|op, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|op, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// writePool lends write buffers for one batch.
var writePool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// maxPooledWrite bounds the buffers writePool keeps.
const maxPooledWrite = 256 << 10

// queuePools lend send-queue slices, one pool per message type, so that an
// idle connection holds none.
var queuePools sync.Map // reflect-free key: *M's zero value type -> *sync.Pool

func queuePool[M Message]() *sync.Pool {
	var key *M
	if p, ok := queuePools.Load(key); ok {
		return p.(*sync.Pool)
	}
	p, _ := queuePools.LoadOrStore(key, &sync.Pool{New: func() any { q := make([]M, 0, 16); return &q }})
	return p.(*sync.Pool)
}

func getQueue[M Message]() []M { return (*queuePool[M]().Get().(*[]M))[:0] }

func putQueue[M Message](q []M) {
	if cap(q) > 1024 {
		return
	}
	clear(q[:cap(q)])
	q = q[:0]
	queuePool[M]().Put(&q)
}
