package proto

import (
	"errors"
	"testing"
)

// FuzzDecode checks that no input makes Decode or Validate panic, that every
// failure is a *ProtocolError, and that what decodes re-encodes and decodes
// to the same envelope.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"signal","id":"1","to":"p2","data":{"description":{"type":"offer","sdp":"v=0"}}}`,
		`{"type":"join","id":"1","room":"lobby"}`,
		`{"type":"join","id":"2","room":"lobby","data":{"invite":"abc"}}`,
		`{"type":"ping","v":1}`,
		`{"type":"x","data":[1,{"a":null}]}`,
		`{"type":"signal","from":"p","to":"q","data":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b, 4096)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Decode error is %T, not *ProtocolError", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Validate error is %T, not *ProtocolError", err)
			}
		}
		out, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		m2, err := Decode(out, len(out))
		if err != nil {
			t.Fatalf("re-decode of %s: %v", out, err)
		}
		if m2.Type != m.Type || m2.ID != m.ID || m2.To != m.To || m2.Room != m.Room || m2.From != m.From {
			t.Fatalf("round trip changed the envelope: %+v vs %+v", m, m2)
		}
	})
}
