package cidr

import (
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		"10.1.2.3/8":          "10.0.0.0/8", // host bits cleared
		"127.0.0.1":           "127.0.0.1/32",
		"::1":                 "::1/128",
		"2001:db8::1/32":      "2001:db8::/32",
		"fe80::1%eth0":        "fe80::1/128", // zone dropped
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::ffff:10.1.2.3/104": "10.0.0.0/8",
		"::ffff:127.0.0.1":    "127.0.0.1/32",
		// Shorter than /96, a mapped prefix covers more than IPv4. The
		// signaling server's old copy of this function turned it into an
		// invalid prefix (a negative length) without an error, so such a
		// trusted proxy silently matched nothing.
		"::ffff:0.0.0.0/80": "::/80",
	} {
		got, err := Parse(in)
		if err != nil || !got.IsValid() || got.String() != want {
			t.Errorf("Parse(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"nope", "", "10.0.0.0/33", "10.0.0.0/8/8", "1.2.3"} {
		if p, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", bad, p)
		}
	}
}

// TestMappedMatchesUnmapped: a mapped range matches the unmapped address a
// caller compares it with, as the TURN peer policy and the proxy check do.
func TestMappedMatchesUnmapped(t *testing.T) {
	p, err := Parse("::ffff:192.0.2.0/120")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Contains(netip.MustParseAddr("192.0.2.9")) || p.Contains(netip.MustParseAddr("192.0.3.9")) {
		t.Errorf("%v matches the wrong addresses", p)
	}
}

func TestParseAll(t *testing.T) {
	ps, err := ParseAll([]string{"10.0.0.0/8", "::1"})
	if err != nil || len(ps) != 2 {
		t.Fatalf("ParseAll = %v, %v", ps, err)
	}
	if _, err := ParseAll([]string{"10.0.0.0/8", "bad"}); err == nil {
		t.Error("ParseAll accepted a bad entry")
	}
}
