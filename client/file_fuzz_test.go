package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/proto"
)

// fakeChannel records what the receiver says back.
type fakeChannel struct {
	mu      sync.Mutex
	replies []string
}

func (f *fakeChannel) SendText(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies = append(f.replies, s)
	return nil
}

func (f *fakeChannel) Close() error { return nil }

// FuzzIncomingFile drives the receiving side of a transfer with arbitrary
// messages from a sender. Whatever they are, a transfer that ends without
// error wrote exactly the offered size, and its SHA-256 is the hash of the
// bytes written: never a silently truncated or altered file.
func FuzzIncomingFile(f *testing.F) {
	good := []byte("hello, file")
	sum := sha256.Sum256(good)
	ctl := func(c fileControl) []byte { b, _ := json.Marshal(c); return append([]byte{'t'}, b...) }
	join := func(msgs ...[]byte) []byte { return bytes.Join(msgs, []byte{0}) }
	f.Add(join(ctl(fileControl{Type: "offer", Room: "r", Name: "a.txt", Size: int64(len(good))}),
		append([]byte{'b'}, good...),
		ctl(fileControl{Type: "end", Size: int64(len(good)), SHA256: hex.EncodeToString(sum[:])})))
	f.Add(join(ctl(fileControl{Type: "offer", Room: "r", Name: "a.txt", Size: 20}),
		append([]byte{'b'}, good...),
		ctl(fileControl{Type: "end", Size: int64(len(good)), SHA256: hex.EncodeToString(sum[:])})))
	f.Add(join(ctl(fileControl{Type: "offer", Room: "r", Name: "../x", Size: 1}), []byte("bX")))
	f.Fuzz(func(t *testing.T, input []byte) {
		events := make(chan Event, 4)
		p := &peer{opts: defaultOptions(), host: &pipeHost{events: events}, rooms: map[string]bool{"r": true},
			member: proto.Member{Peer: "p", User: "u"}}
		p.opts.maxFileSize = 1 << 10
		ch := &fakeChannel{}
		in := &incoming{p: p, dc: ch, log: p.opts.log}
		var written bytes.Buffer
		var tr *Transfer
		for _, msg := range bytes.Split(input, []byte{0}) {
			if len(msg) == 0 {
				continue
			}
			in.onMessage(webrtc.DataChannelMessage{IsString: msg[0] == 't', Data: msg[1:]})
			select {
			case ev := <-events:
				if file, ok := ev.(*IncomingFile); ok && tr == nil {
					var err error
					if tr, err = file.Accept(&written); err != nil {
						t.Fatal(err)
					}
				}
			default:
			}
		}
		in.fail(ErrTransferInterrupted) // the channel closes at the end
		if tr == nil {
			return
		}
		<-tr.Done()
		if tr.Err() != nil {
			return
		}
		got := sha256.Sum256(written.Bytes())
		if int64(written.Len()) != tr.Size || tr.SHA256() != hex.EncodeToString(got[:]) {
			t.Fatalf("transfer succeeded with %d of %d bytes, sha %s vs written %x", written.Len(), tr.Size, tr.SHA256(), got)
		}
	})
}
