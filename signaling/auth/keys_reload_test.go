package auth

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/store"
)

// pausingKeys holds one SigningKeys call, once armed, with what it read,
// until release is closed; read is closed when it has read.
type pausingKeys struct {
	store.Backend
	armed   atomic.Bool
	read    chan struct{}
	release chan struct{}
}

func (p *pausingKeys) SigningKeys() ([]store.SigningKey, error) {
	ks, err := p.Backend.SigningKeys()
	if p.armed.CompareAndSwap(true, false) {
		close(p.read)
		<-p.release
	}
	return ks, err
}

// TestReloadsDoNotOverwriteNewerKeys: a reload that read the keys before a
// retirement, and is slow to use them, must not put the retired key back
// after a later reload took it away (two reloads at once: a node's watch
// and its own Retire, or a backstop's tick).
func TestReloadsDoNotOverwriteNewerKeys(t *testing.T) {
	st := openStore(t)
	p := &pausingKeys{Backend: st, read: make(chan struct{}), release: make(chan struct{})}
	k, err := NewKeys(p, KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := k.signKID
	if _, err := k.Rotate(); err != nil {
		t.Fatal(err)
	}
	p.armed.Store(true)
	first := make(chan error, 1)
	go func() { first <- k.Reload() }()
	<-p.read // the first reload has read: old still active
	if err := st.RetireSigningKey(old); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- k.Reload() }()
	// Serialised, the second waits for the first, which waits for release:
	// release it once the second is done, or after a second at most.
	select {
	case err := <-second:
		second <- err
	case <-time.After(time.Second):
	}
	close(p.release)
	for _, c := range []chan error{first, second} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	if k.Verifies(old) {
		t.Fatal("the retired key verifies again: a reload that read before the retirement applied its keys last")
	}
}
