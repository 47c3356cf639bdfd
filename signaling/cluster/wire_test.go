package cluster

import (
	"reflect"
	"testing"

	"github.com/khadga/khadga/signaling/hub"
)

// FuzzWire: every node reads what every other node publishes, so a
// message that crashed a decoder would take the whole cluster down at
// once. On any bytes the decoders return a message or errBadMessage,
// never panic, and what they decode encodes back to bytes that decode
// to the same message (uvarints may be written longer than needed, so
// the bytes themselves may differ).
func FuzzWire(f *testing.F) {
	f.Add(appendDeliver(nil, delivery{kind: hub.KindSignal, seq: 7, to: "b1", from: "a1", ref: "r", origin: "na", msg: []byte(`{"type":"signal"}`)}))
	f.Add(appendDeliver(nil, delivery{kind: hub.KindSignal, seq: 1, oseq: 3, to: "b1", from: "a1", origin: "na", osrc: "nb", msg: []byte(`{}`)}))
	f.Add(appendAcks(nil, []ack{{seq: 1, status: ackDelivered}, {seq: 300, status: ackUnavailable}}))
	f.Add(appendDelivered(nil, []uint64{1, 2, 1 << 40}))
	f.Add(appendMoved(nil, "nc", []uint64{5}))
	f.Add([]byte{opAck, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := decodeDeliver(b); err == nil {
			again, err := decodeDeliver(appendDeliver(nil, d))
			if err != nil || !reflect.DeepEqual(again, d) {
				t.Fatalf("deliver %+v re-encoded decodes to %+v, %v", d, again, err)
			}
		}
		if as, err := decodeAcks(b); err == nil {
			again, err := decodeAcks(appendAcks(nil, as))
			if err != nil || !reflect.DeepEqual(again, as) {
				t.Fatalf("acks %v re-encoded decode to %v, %v", as, again, err)
			}
		}
		if seqs, err := decodeDelivered(b); err == nil {
			again, err := decodeDelivered(appendDelivered(nil, seqs))
			if err != nil || !reflect.DeepEqual(again, seqs) {
				t.Fatalf("delivered %v re-encoded decode to %v, %v", seqs, again, err)
			}
		}
		if node, seqs, err := decodeMoved(b); err == nil {
			n2, s2, err := decodeMoved(appendMoved(nil, node, seqs))
			if err != nil || n2 != node || !reflect.DeepEqual(s2, seqs) {
				t.Fatalf("moved %s %v re-encoded decodes to %s %v, %v", node, seqs, n2, s2, err)
			}
		}
	})
}
