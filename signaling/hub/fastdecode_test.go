package hub

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/khadga/khadga/proto"
)

var decodeSeeds = []string{
	`{"type":"signal","id":"17","to":"Xk3a","data":{"candidate":{"candidate":"a"}}}`,
	`{"type":"signal","to":"b1","room":"lobby","data":{"description":{"type":"offer","sdp":"v=0\r\n"}}}`,
	` { "type" : "join" , "id" : "1" , "room" : "r" } `,
	`{"type":"ping","v":1,"id":"3"}`,
	`{"type":"ping","v":0}`,
	`{"type":"ping","v":2}`,
	`{"type":"ping","v":01}`,
	`{"type":"ping","v":1.0}`,
	`{"type":"ping","v":-1}`,
	`{"type":"ping","v":1000}`,
	`{"type":"ping","Type":"join"}`,
	`{"TYPE":"ping"}`,
	`{"type":"ping","type":"join"}`,
	`{"type":"ping","id":"a\"b"}`,
	`{"type":"ping","id":"a\u0041"}`,
	`{"type":"ping","id":null}`,
	`{"type":"ping","bogus":1}`,
	`{"type":""}`,
	`{}`,
	`[]`,
	`{"type":"ping"}x`,
	`{"type":"ping"}{"type":"ping"}`,
	`{"type":"signal","to":"b","data":null}`,
	`{"type":"signal","to":"b","data":"x"}`,
	`{"type":"signal","to":"b","data":[1,2]}`,
	`{"type":"signal","to":"b","data":{"a":"}\\"}}`,
	`{"type":"signal","to":"b","data":{"a":[}}`,
	`{"type":"signal","to":"b","data":{ "a" : 1 } }`,
	`{"type":"signal","from":"x","to":"b","data":{}}`,
	`{"type":"ping",}`,
	`{"type":"ping"`,
	"{\"type\":\"ping\",\"id\":\"\x01\"}",
	`{"type":"ping","id":"ü€"}`,
	"{\"type\":\"ping\",\"id\":\"\xff\"}",
}

// checkDecode fails if the fast path accepts b but proto.Decode does not
// return the very same message.
func checkDecode(t *testing.T, b []byte) {
	fast := new(proto.Message)
	if !fastDecode(b, 4096, fast) {
		return
	}
	ref, err := proto.Decode(b, 4096)
	if err != nil {
		t.Fatalf("fast path accepted %q, proto.Decode refused it: %v", b, err)
	}
	if !reflect.DeepEqual(fast, ref) {
		t.Fatalf("input %q: fast path %+v, proto.Decode %+v", b, fast, ref)
	}
}

func TestFastDecodeMatchesProto(t *testing.T) {
	accepted := 0
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
		if fastDecode([]byte(s), 4096, new(proto.Message)) {
			accepted++
		}
		// decode must agree with proto.Decode on errors too.
		err1 := decode([]byte(s), 4096, new(proto.Message))
		_, err2 := proto.Decode([]byte(s), 4096)
		if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) {
			t.Fatalf("input %q: decode %v, proto.Decode %v", s, err1, err2)
		}
	}
	if accepted < 8 {
		t.Fatalf("fast path took only %d of the plain seeds", accepted)
	}
	big := `{"type":"signal","to":"b","data":{"pad":"` + strings.Repeat("x", 5000) + `"}}`
	if fastDecode([]byte(big), 4096, new(proto.Message)) {
		t.Fatal("fast path ignored the size limit")
	}
}

func FuzzDecodeMatchesProto(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, b) })
}

func BenchmarkFastDecodeSignal(b *testing.B) {
	msg := []byte(`{"type":"signal","id":"17","to":"Xk3aaaaaaaaaaaaa","data":{"candidate":{"candidate":"` + strings.Repeat("a", 1000) + `"}}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		var m proto.Message
		if err := decode(msg, 0, &m); err != nil {
			b.Fatal(err)
		}
		if err := m.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFastDecodeMutations runs the differential check on random mutations
// of the seeds: flipped, inserted and deleted bytes drawn from JSON's
// punctuation, so that near-misses of the fast path's shapes are common.
func TestFastDecodeMutations(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("{}[]\":,\\ \t\nu0123456789-.eE+tfnlrsaTypedIDvo\x00\x1f\x7f\xc3\xbc")
	n := 100000
	if testing.Short() {
		n = 10000
	}
	accepted := 0
	for i := 0; i < n; i++ {
		seed := decodeSeeds[rng.IntN(len(decodeSeeds))]
		if rng.IntN(2) == 0 {
			seed = decodeSeeds[rng.IntN(5)] // the plain, valid ones
		}
		b := []byte(seed)
		for k := rng.IntN(2) + 1; k > 0; k-- {
			pos := rng.IntN(len(b) + 1)
			c := alphabet[rng.IntN(len(alphabet))]
			switch rng.IntN(3) {
			case 0:
				b = append(b[:pos], append([]byte{c}, b[pos:]...)...)
			case 1:
				if pos < len(b) {
					b[pos] = c
				}
			case 2:
				if pos < len(b) {
					b = append(b[:pos], b[pos+1:]...)
				}
			}
		}
		checkDecode(t, b)
		if fastDecode(b, 4096, new(proto.Message)) {
			accepted++
		}
	}
	// Most mutations break the shape; enough must keep it for the test to
	// mean something.
	if accepted < n/20 {
		t.Fatalf("only %d of %d mutations took the fast path", accepted, n)
	}
	t.Logf("%d of %d mutations took the fast path", accepted, n)
}
