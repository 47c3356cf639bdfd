package turn

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// FuzzParseUsername: any username parses or is refused, never panics, and
// a parsed one round-trips its user.
func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1700000000:alice", "1:", "x:y", "", ":", "99999999999999999999:a", "-1:a", "1700000000:a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		user, _, err := parseUsername(s, time.Unix(0, 0))
		if err == nil && userOf(s) != user {
			t.Fatalf("parseUsername(%q) user %q, userOf %q", s, user, userOf(s))
		}
	})
}

// FuzzInspect: the secret checker reads whatever a client sends, STUN or
// not, before pion does; it must never panic, never change the bytes pion
// will read, and only leave a hint for a message one secret signed.
func FuzzInspect(f *testing.F) {
	signed := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername("1:u"),
		stun.NewRealm("khadga"), stun.NewLongTermIntegrity("1:u", "khadga", restPassword([]byte("b"), "1:u")),
		stun.Fingerprint)
	f.Add(signed.Raw)
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}) // ChannelData
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42})
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &secretChecker{secrets: newSecretSet([][]byte{[]byte("a"), []byte("b")}), hints: newSecretHints()}
		orig := bytes.Clone(b)
		c.inspect(b, src)
		if !bytes.Equal(b, orig) {
			t.Fatal("inspect changed the message")
		}
		if len(c.hints.m) > 1 {
			t.Fatalf("%d hints from one message", len(c.hints.m))
		}
	})
}

// FuzzStreamFraming: any byte stream through streamConn's framing comes
// out as whole frames or an error, never a panic or a frame bigger than
// pion reads.
func FuzzStreamFraming(f *testing.F) {
	f.Add(append(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw, 0x40, 0, 0, 1, 9, 0, 0, 0))
	f.Add([]byte{0x40, 0x00, 0xff, 0xff})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		client, server := net.Pipe()
		defer server.Close()
		go func() {
			client.Write(b) //nolint:errcheck // the reader may stop early
			client.Close()
		}()
		ln := newStreamListener(nil, &secretChecker{secrets: newSecretSet([][]byte{[]byte("a"), []byte("b")}), hints: newSecretHints()})
		sc := &streamConn{Conn: server, owner: ln, checker: ln.checker,
			frames: newFrameReader(server), buf: make([]byte, frameBufSize)}
		p := make([]byte, frameBufSize)
		for {
			n, err := sc.Read(p)
			if err != nil {
				return // EOF or a stream that is not TURN: pion drops the connection
			}
			if n == 0 || n > frameBufSize {
				t.Fatalf("read %d bytes", n)
			}
		}
	})
}
