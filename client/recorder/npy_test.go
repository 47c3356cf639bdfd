package recorder

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestNPYHeader(t *testing.T) {
	for _, shape := range [][]int{{150, 224, 224, 3}, {7}, {0}, {1 << 30, 4096, 4096, 3}} {
		h := npyHeader("|u1", shape...)
		if !bytes.HasPrefix(h, []byte("\x93NUMPY\x01\x00")) {
			t.Fatalf("%v: bad magic %q", shape, h[:8])
		}
		if len(h)%64 != 0 || int(binary.LittleEndian.Uint16(h[8:]))+10 != len(h) || h[len(h)-1] != '\n' {
			t.Fatalf("%v: header length %d, field %d", shape, len(h), binary.LittleEndian.Uint16(h[8:]))
		}
		if len(shape) < 4 && len(h) != npyHeaderLen {
			t.Errorf("%v: header %d bytes, want the fixed %d", shape, len(h), npyHeaderLen)
		}
	}
	if got := string(npyHeader("<i8", 3)[10:]); !bytes.HasPrefix([]byte(got), []byte("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }")) {
		t.Errorf("1-D header %q", got)
	}
}
