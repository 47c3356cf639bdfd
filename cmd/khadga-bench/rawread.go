//go:build linux

// The tuned client's frame reader for the relay phases over ws.

package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/khadga/khadga/internal/rawsock"
)

// readRaw is read without gorilla, for the relay's many small messages: it
// parses the server's frames itself and stays inside one RawConn.Read, so
// that a read that drained the socket is followed by a wait for the
// poller, not by a read that returns EAGAIN. The load client shares the
// cores with the server it measures, so what it saves goes to the server.
// Before the phase, every message of the set-up has been read whole by
// gorilla and the servers send nothing unasked (presence is off in the
// relay phases), so gorilla holds no buffered bytes when this starts.
func (r *relayRun) readRaw(p *relayPeer, c *rawsock.Conn) {
	buf := make([]byte, 32<<10)
	start, end := 0, 0
	drained := false
	var rerr error
	err := c.Raw().Read(func(fd uintptr) bool {
		for {
			for {
				f, n, err := serverFrame(buf[start:end])
				if err != nil {
					rerr = err
					return true
				}
				if n == 0 {
					break // incomplete
				}
				start += n
				switch f.op {
				case opText:
					r.handle(p, f.payload)
				case opClose:
					rerr = &websocket.CloseError{Code: closeCode(f.payload)}
					return true
				case opPing:
					_ = p.c.ws.WriteControl(websocket.PongMessage, f.payload, time.Now().Add(writeWait))
				}
			}
			if start == end {
				start, end = 0, 0
			} else if end == len(buf) {
				end = copy(buf, buf[start:end])
				start = 0
			}
			if drained {
				drained = false
				return false // wait for more; no read to learn there is none
			}
			n, err := rawsock.IO(syscall.SYS_READ, fd, buf[end:])
			switch {
			case err == syscall.EAGAIN:
				return false
			case err != nil:
				rerr = err
				return true
			case n == 0:
				rerr = io.EOF
				return true
			}
			drained = n < len(buf)-end
			end += n
		}
	})
	if err == nil {
		err = rerr
	}
	r.ended(err)
}

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opText  = 1
	opClose = 8
	opPing  = 9
)

// frame is one frame from the server.
type frame struct {
	op      byte
	payload []byte
}

// serverFrame parses the frame at the start of b: n is its length, 0 if b
// holds only part of it. A server frame is never masked; the bench's
// servers send whole text messages, so a fragment is an error here.
func serverFrame(b []byte) (frame, int, error) {
	if len(b) < 2 {
		return frame{}, 0, nil
	}
	fin, op := b[0]&0x80 != 0, b[0]&0x0f
	if !fin || b[0]&0x70 != 0 || b[1]&0x80 != 0 {
		return frame{}, 0, fmt.Errorf("unexpected frame header %#x %#x", b[0], b[1])
	}
	n, h := int(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return frame{}, 0, nil
		}
		n, h = int(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return frame{}, 0, nil
		}
		v := binary.BigEndian.Uint64(b[2:10])
		if v > 16<<10 {
			return frame{}, 0, fmt.Errorf("a %d-byte frame", v)
		}
		n, h = int(v), 10
	}
	if len(b) < h+n {
		return frame{}, 0, nil
	}
	return frame{op: op, payload: b[h : h+n]}, h + n, nil
}

// closeCode is the status code of a close frame's payload.
func closeCode(payload []byte) int {
	if len(payload) < 2 {
		return websocket.CloseNoStatusReceived
	}
	return int(binary.BigEndian.Uint16(payload))
}
