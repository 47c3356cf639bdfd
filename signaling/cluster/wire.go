package cluster

import (
	"encoding/binary"
	"errors"

	"github.com/khadga/khadga/signaling/hub"
)

// Messages on a node's subject (subjectNode), in a compact binary form: the
// first byte says which, the rest is uvarints and length-prefixed strings.
// The hub's message itself goes last, as it is: no copy into base64.
//
//	deliver:   'D' kind seq:uvarint to from ref origin msg...
//	numbered:  'O' kind seq:uvarint oseq:uvarint to from ref origin osrc msg...
//	ack:       'A' n:uvarint (seq:uvarint status:byte){n}
//	delivered: 'H' n:uvarint (seq:uvarint){n}
//	moved:     'M' node n:uvarint (seq:uvarint){n}
//	state:     'S' JSON (directory.go: a session's state, or its end)
//
// A string is its length (uvarint) and its bytes. Everything is bounded:
// a decoder refuses what no node sends (errBadMessage).
const (
	opDeliver   = 'D'
	opNumbered  = 'O' // a deliver with its order (order.go), to nodes that say they take it
	opAck       = 'A'
	opDelivered = 'H'
	opMoved     = 'M'
)

// Fates of a delivered signal, in an ack.
const (
	ackDelivered   byte = iota // queued on its target's connection
	ackHeld                    // kept in the absent queue of a session whose socket is away
	ackUnknown                 // no such session on that node
	ackUnavailable             // the session could not take it
)

// Bounds of decoded fields: ids are short, a message is at most the hub's
// read limit plus the envelope it gains.
const (
	maxIDLen  = 128
	maxMsgLen = 1 << 20
	maxBatch  = 1 << 16
)

var errBadMessage = errors.New("cluster: bad message")

// delivery is a decoded deliver message.
type delivery struct {
	kind   hub.Kind
	seq    uint64
	to     string
	from   string
	ref    string
	origin string
	// osrc and oseq are a signal's order: the node that numbered it for
	// its target, and the number (order.go); zero if it has none.
	osrc string
	oseq uint64
	msg  []byte
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendDeliver appends d, numbered (opNumbered) if it has an order.
func appendDeliver(b []byte, d delivery) []byte {
	op := byte(opDeliver)
	if d.oseq != 0 {
		op = opNumbered
	}
	b = append(b, op, byte(d.kind))
	b = binary.AppendUvarint(b, d.seq)
	if op == opNumbered {
		b = binary.AppendUvarint(b, d.oseq)
	}
	b = appendString(b, d.to)
	b = appendString(b, d.from)
	b = appendString(b, d.ref)
	b = appendString(b, d.origin)
	if op == opNumbered {
		b = appendString(b, d.osrc)
	}
	return append(b, d.msg...)
}

// reader reads the fields of a message, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBadMessage
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errBadMessage
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) string(limit int) string {
	n := r.uvarint()
	if r.err != nil || n > uint64(limit) || n > uint64(len(r.b)) {
		r.err = errBadMessage
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// decodeDeliver decodes a deliver message (its first byte included). msg
// aliases b.
func decodeDeliver(b []byte) (delivery, error) {
	r := reader{b: b}
	op := r.byte()
	if op != opDeliver && op != opNumbered {
		return delivery{}, errBadMessage
	}
	var d delivery
	d.kind = hub.Kind(r.byte())
	d.seq = r.uvarint()
	if op == opNumbered {
		d.oseq = r.uvarint()
	}
	d.to = r.string(maxIDLen)
	d.from = r.string(maxIDLen)
	d.ref = r.string(maxIDLen)
	d.origin = r.string(maxIDLen)
	if op == opNumbered {
		d.osrc = r.string(maxIDLen)
		if r.err == nil && (d.oseq == 0 || !validToken(d.osrc)) {
			r.err = errBadMessage
		}
	}
	if r.err != nil || len(r.b) > maxMsgLen || d.kind < hub.KindSignal || d.kind > hub.KindReport {
		return delivery{}, errBadMessage
	}
	d.msg = r.b
	return d, nil
}

// ack is the fate of one delivered signal.
type ack struct {
	seq    uint64
	status byte
}

func appendAcks(b []byte, acks []ack) []byte {
	b = append(b, opAck)
	b = binary.AppendUvarint(b, uint64(len(acks)))
	for _, a := range acks {
		b = binary.AppendUvarint(b, a.seq)
		b = append(b, a.status)
	}
	return b
}

func decodeAcks(b []byte) ([]ack, error) {
	r := reader{b: b}
	if r.byte() != opAck {
		return nil, errBadMessage
	}
	n := r.uvarint()
	if r.err != nil || n > maxBatch || n > uint64(len(r.b)) {
		return nil, errBadMessage
	}
	acks := make([]ack, 0, n)
	for range n {
		a := ack{seq: r.uvarint(), status: r.byte()}
		if r.err != nil || a.status > ackUnavailable {
			return nil, errBadMessage
		}
		acks = append(acks, a)
	}
	if len(r.b) != 0 {
		return nil, errBadMessage
	}
	return acks, nil
}

func appendDelivered(b []byte, seqs []uint64) []byte {
	return appendSeqs(append(b, opDelivered), seqs)
}

func decodeDelivered(b []byte) ([]uint64, error) {
	r := reader{b: b}
	if r.byte() != opDelivered {
		return nil, errBadMessage
	}
	return r.seqs()
}

// appendMoved says that the signals seqs, which the receiver sent to this
// node, were handed on to node (Handover): the receiver tracks them there.
func appendMoved(b []byte, node string, seqs []uint64) []byte {
	return appendSeqs(appendString(append(b, opMoved), node), seqs)
}

func decodeMoved(b []byte) (string, []uint64, error) {
	r := reader{b: b}
	if r.byte() != opMoved {
		return "", nil, errBadMessage
	}
	node := r.string(maxIDLen)
	if r.err != nil || !validToken(node) {
		return "", nil, errBadMessage
	}
	seqs, err := r.seqs()
	return node, seqs, err
}

// appendSeqs appends a count and that many sequence numbers.
func appendSeqs(b []byte, seqs []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(seqs)))
	for _, s := range seqs {
		b = binary.AppendUvarint(b, s)
	}
	return b
}

// seqs reads what appendSeqs wrote, which must end the message.
func (r *reader) seqs() ([]uint64, error) {
	n := r.uvarint()
	if r.err != nil || n > maxBatch || n > uint64(len(r.b)) {
		return nil, errBadMessage
	}
	seqs := make([]uint64, 0, n)
	for range n {
		seqs = append(seqs, r.uvarint())
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, errBadMessage
	}
	return seqs, nil
}
