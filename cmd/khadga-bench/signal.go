//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// msgType returns the value of the first "type" field in a server frame
// without decoding it: both servers put type first, and the bench's own
// payload holds no "type" key. It falls back to a full decode.
func msgType(b []byte) string {
	const key = `"type":"`
	if i := bytes.Index(b, []byte(key)); i >= 0 {
		rest := b[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			return string(rest[:j])
		}
	}
	var m struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(b, &m)
	return m.Type
}

// errCode names a server error for the report: khadga's data.code, or the
// PeerJS message type.
func errCode(b []byte, typ string) string {
	var m struct {
		Data struct {
			Code string `json:"code"`
		} `json:"data"`
	}
	if typ == "error" && json.Unmarshal(b, &m) == nil && m.Data.Code != "" {
		return m.Data.Code
	}
	return typ
}

// isErrorType reports whether typ is a server's answer that something was
// refused or lost: khadga's error, PeerJS's ERROR, EXPIRE (a signal to an
// absent peer) and LEAVE.
func isErrorType(typ string) bool {
	switch typ {
	case "error", "ERROR", "EXPIRE", "LEAVE":
		return true
	}
	return false
}

// The payload of every signal: a send timestamp, fixed width so that every
// signal has the same size, and padding up to -size bytes.
//
//	{"t":"0000000000123456789","pad":"xxxx…"}
const (
	stampKey   = `"t":"`
	stampWidth = 19
	padKey     = `","pad":"`
)

// payloadOverhead is the size of a payload without padding.
const payloadOverhead = len(`{`) + len(stampKey) + stampWidth + len(padKey) + len(`"}`)

// signalFrame builds the frames of one sender: prefix, payload, suffix. The
// stamp sits at a fixed offset, so that each send rewrites only it.
type signalFrame struct {
	buf      []byte
	stampOff int
}

func newSignalFrame(t target, dst string, size int) *signalFrame {
	var b []byte
	b = append(b, t.signalPrefix(dst)...)
	b = append(b, '{')
	b = append(b, stampKey...)
	off := len(b)
	b = append(b, bytes.Repeat([]byte{'0'}, stampWidth)...)
	b = append(b, padKey...)
	b = append(b, bytes.Repeat([]byte{'x'}, size-payloadOverhead)...)
	b = append(b, `"}`...)
	b = append(b, t.signalSuffix()...)
	return &signalFrame{buf: b, stampOff: off}
}

// stamp writes ns, zero-padded, into the frame and returns it.
func (f *signalFrame) stamp(ns int64) []byte {
	dst := f.buf[f.stampOff : f.stampOff+stampWidth]
	for i := stampWidth - 1; i >= 0; i-- {
		dst[i] = byte('0' + ns%10)
		ns /= 10
	}
	return f.buf
}

// readStamp finds the send timestamp in a received signal.
func readStamp(b []byte) (int64, bool) {
	i := bytes.Index(b, []byte(stampKey))
	if i < 0 || len(b) < i+len(stampKey)+stampWidth {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b[i+len(stampKey):i+len(stampKey)+stampWidth]), 10, 64)
	return n, err == nil
}
