package recorder

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// npyHeaderLen is the size of every .npy header the recorder writes. A fixed
// size lets a clip's frame array be streamed to disk and its shape patched in
// place when the clip ends early.
const npyHeaderLen = 128

// npyHeader returns a NumPy format v1.0 header for a C-order array: magic,
// version, little-endian header length, then a Python dict literal padded
// with spaces and ending in a newline, so that the data starts on a 64-byte
// boundary (as numpy itself writes).
func npyHeader(descr string, shape ...int) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, tuple)
	total := npyHeaderLen
	for 10+len(dict)+1 > total {
		total += 64
	}
	h := make([]byte, total)
	copy(h, "\x93NUMPY\x01\x00")
	binary.LittleEndian.PutUint16(h[8:], uint16(total-10))
	n := copy(h[10:], dict)
	for i := 10 + n; i < total-1; i++ {
		h[i] = ' '
	}
	h[total-1] = '\n'
	return h
}

// npyInt64 encodes v as a .npy int64 [len(v)] array.
func npyInt64(v []int64) []byte {
	h := npyHeader("<i8", len(v))
	b := make([]byte, len(h)+8*len(v))
	copy(b, h)
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[len(h)+8*i:], uint64(x))
	}
	return b
}

// npyFloat32 encodes v as a .npy float32 [len(v)] array.
func npyFloat32(v []float32) []byte {
	h := npyHeader("<f4", len(v))
	b := make([]byte, len(h)+4*len(v))
	copy(b, h)
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[len(h)+4*i:], math.Float32bits(x))
	}
	return b
}
