package networks_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// connectedRe matches khadga-peer's connectedLine.
const connectedRe = `connected to (\S+): (direct|relayed) \(local (\w+)(?: over (\w+))?, remote (\w+)\) (\d+) ms after joining`

// conn is how one khadga-peer says it connected.
type conn struct {
	label         string // direct or relayed
	local, remote string // candidate types of the selected pair
	relayProto    string // udp, tcp or tls when local is a relay
	joinToOpen    time.Duration
}

func parseConn(m []string) conn {
	ms, _ := strconv.Atoi(m[6])
	return conn{label: m[2], local: m[3], relayProto: m[4], remote: m[5], joinToOpen: time.Duration(ms) * time.Millisecond}
}

// callResult is what a call between two Go peers showed.
type callResult struct {
	alice, bob conn
	fileSize   int
	fileTime   time.Duration // from /accept to the verified file
}

func (r callResult) mibps() float64 {
	return float64(r.fileSize) / (1 << 20) / r.fileTime.Seconds()
}

// callOpts shape a call.
type callOpts struct {
	room     string
	relay    bool // both peers in relay-only mode (--relay)
	fileSize int  // bytes alice sends bob; 0: no file
}

// call runs khadga-peer chat for alice at a and bob at b: they connect,
// chat both ways, and alice sends bob a file of random bytes, which must
// arrive with its SHA-256. It returns how they connected and the file's
// time.
func (s *server) call(t *testing.T, a, b *site, o callOpts) callResult {
	t.Helper()
	args := []string{"chat", o.room}
	if o.relay {
		args = append(args, "--relay")
	}
	inbox := t.TempDir()
	alice := s.peer(t, a, "alice", args...)
	bob := s.peer(t, b, "bob", append(args, "--dir", inbox)...)
	var r callResult
	r.alice = parseConn(alice.waitLine(`\* ` + connectedRe))
	r.bob = parseConn(bob.waitLine(`\* ` + connectedRe))
	t.Logf("alice: %+v", r.alice)
	t.Logf("bob: %+v", r.bob)

	alice.say("hello from alice at " + a.hostIP)
	bob.waitLine(`\] alice: hello from alice at ` + a.hostIP + `$`)
	bob.say("hello from bob at " + b.hostIP)
	alice.waitLine(`\] bob: hello from bob at ` + b.hostIP + `$`)

	if o.fileSize > 0 {
		data := make([]byte, o.fileSize)
		if _, err := rand.Read(data); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(t.TempDir(), "payload.bin")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		alice.say("/send " + src + " bob")
		bob.waitLine(`\* alice offers payload\.bin \(` + strconv.Itoa(o.fileSize) + ` bytes\)`)
		began := time.Now()
		bob.say("/accept")
		m := bob.waitLineFor(`received (\S+) \((\d+) bytes, sha256 ([0-9a-f]+)\) from alice`, 3*waitTimeout)
		r.fileTime = time.Since(began)
		r.fileSize = o.fileSize
		if m[3] != hex.EncodeToString(sum[:]) {
			t.Fatalf("received sha256 %s, sent %x", m[3], sum)
		}
		got, err := os.ReadFile(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != sum {
			t.Fatal("the file on disk differs from the one sent")
		}
		alice.waitLine(`\* sent payload\.bin to bob, verified`)
		t.Logf("file: %d bytes in %v (%.1f MiB/s)", o.fileSize, r.fileTime.Round(time.Millisecond), r.mibps())
	}
	alice.say("/quit")
	bob.say("/quit")
	for _, p := range []*proc{alice, bob} {
		if code := p.wait(); code != 0 {
			t.Errorf("%s exited %d", p.name, code)
		}
	}
	return r
}

// wantConn checks a peer's connection: its label, and its pair's types
// (a local or remote type of "" accepts any).
func wantConn(t *testing.T, who string, c conn, label, local, remote string) {
	t.Helper()
	if c.label != label || (local != "" && c.local != local) || (remote != "" && c.remote != remote) {
		t.Errorf("%s connected %s (local %s, remote %s), want %s (local %s, remote %s)",
			who, c.label, c.local, c.remote, label, or(local, "any"), or(remote, "any"))
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// video has alice at a send bob at b the test pattern with khadga-peer
// video, and bob record it; it returns the frames bob recorded.
func (s *server) video(t *testing.T, a, b *site, room string, frames int) int {
	t.Helper()
	dir := t.TempDir()
	bob := s.peer(t, b, "bob", "video", "--room", room, "--record-to", dir)
	alice := s.peer(t, a, "alice", "video", "--room", room, "--pattern", "--frames", strconv.Itoa(frames), "--to", "bob")
	alice.waitLine(`sending video to bob`)
	alice.waitLineFor(`sent \d+ frames`, 2*waitTimeout)
	if code := alice.wait(); code != 0 {
		t.Errorf("khadga-peer video (alice) exited %d", code)
	}
	// Alice's peer connection closed with her process: the track ends.
	m := bob.waitLine(`recorded (\d+) frames from alice to (\S+)`)
	bob.stop()
	n, _ := strconv.Atoi(m[1])
	if fi, err := os.Stat(m[2]); err != nil || fi.Size() < int64(n)*100 {
		t.Errorf("recording %s: %v, %d frames", m[2], err, n)
	}
	return n
}
