package hub

import (
	"encoding/json"
	"strings"
	"testing"
)

var scanSeeds = []string{
	`{}`, `[]`, `{"a":1}`, `[1,2,3]`, ` {"a" : [ true , false , null ] } `,
	`{"sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n","type":"offer"}`,
	`{"a":"\u00e9\"\\\/\b\f\n\r\t"}`, `{"a":"\u00G0"}`, `{"a":"\x"}`, `{"a":"\u12"}`,
	`{"a":-0.5e+10}`, `{"a":-}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1E-3}`,
	`{"a":tru}`, `{"a":nul}`, `{"a":falsey}`, `{"a"}`, `{"a":}`, `{,}`, `[,]`, `[1,]`, `{"a":1,}`,
	`[1 2]`, `{"a":1 "b":2}`, `{1:2}`, `[}`, `{]`, `[[[[]]]]`, `[[[[]]]`, `"str"`, `1`,
	"{\"a\":\"\x01\"}", "{\"a\":\"\x7f\"}", `{"a":"` + strings.Repeat("x", 1000) + `"}`,
	`{"t":"1234567890123456789","pad":"` + strings.Repeat("xyz", 333) + `\"` + `"}`,
	strings.Repeat("[", maxScanDepth) + strings.Repeat("]", maxScanDepth),
}

// checkScan fails if scanComposite accepts a prefix json.Valid refuses, or
// refuses input json.Valid accepts within the depth scanComposite follows.
func checkScan(t *testing.T, b []byte) {
	end, ok := scanComposite(b, 0)
	if ok {
		if !json.Valid(b[:end]) {
			t.Fatalf("scanComposite accepted %q, json.Valid refuses it", b[:end])
		}
		if json.Valid(b) && end != len(b) && strings.TrimSpace(string(b[end:])) != "" {
			t.Fatalf("scanComposite stopped at %d of valid %q", end, b)
		}
		return
	}
	if json.Valid(b) && len(b) > 0 && (b[0] == '{' || b[0] == '[') && depthOf(b) <= maxScanDepth {
		t.Fatalf("scanComposite refused valid %q", b)
	}
}

// depthOf is the nesting depth of valid JSON b.
func depthOf(b []byte) int {
	d, most, inStr := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '{' || c == '['):
			d++
			most = max(most, d)
		case !inStr && (c == '}' || c == ']'):
			d--
		}
	}
	return most
}

func TestScanCompositeMatchesJSONValid(t *testing.T) {
	accepted := 0
	for _, s := range scanSeeds {
		checkScan(t, []byte(s))
		if _, ok := scanComposite([]byte(s), 0); ok {
			accepted++
		}
	}
	if accepted < 12 {
		t.Fatalf("scanComposite accepted only %d of the seeds", accepted)
	}
	deep := strings.Repeat("[", maxScanDepth+1) + strings.Repeat("]", maxScanDepth+1)
	if _, ok := scanComposite([]byte(deep), 0); ok {
		t.Fatal("scanComposite followed nesting past maxScanDepth")
	}
	// Every prefix of a valid document is refused (none is complete).
	doc := []byte(`{"a":[1,{"b":"c\"d"},-2.5e3,true,null],"e":{}}`)
	for i := range doc {
		if end, ok := scanComposite(doc[:i], 0); ok {
			t.Fatalf("prefix %q accepted up to %d", doc[:i], end)
		}
	}
	if end, ok := scanComposite(doc, 0); !ok || end != len(doc) {
		t.Fatalf("whole document: end %d, ok %v", end, ok)
	}
}

func FuzzScanComposite(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkScan(t, b) })
}
