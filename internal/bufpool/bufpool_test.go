package bufpool

import "testing"

// TestPutKeepsGrownBuffersSmall checks what Put keeps: a buffer that grew
// within the bound comes back emptied with its capacity, one that grew
// past it is not kept.
func TestPutKeepsGrownBuffersSmall(t *testing.T) {
	bp := Get()
	if len(*bp) != 0 {
		t.Fatalf("borrowed buffer has %d bytes, want none", len(*bp))
	}
	b := append((*bp)[:0], make([]byte, 4096)...)
	Put(bp, b)
	if len(*bp) != 0 || cap(*bp) != cap(b) {
		t.Fatalf("kept buffer len %d cap %d, want 0 and %d", len(*bp), cap(*bp), cap(b))
	}

	big := Get()
	grown := append((*big)[:0], make([]byte, maxPooled+1)...)
	Put(big, grown)
	if cap(*big) == cap(grown) {
		t.Fatal("Put reset a buffer grown past maxPooled, as it does only for the buffers it keeps")
	}
}
