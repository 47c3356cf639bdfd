package kvstore

import (
	"testing"

	"github.com/khadga/khadga/signaling/store"
	"github.com/khadga/khadga/signaling/store/storetest"
)

// TestConformance runs the store contract's suite against JetStream KV on
// an in-process NATS server. Every open is a new connection, as another
// node (or a restarted one) would make.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Config{Nodes: true, New: func(t *testing.T) storetest.Opener {
		prefix := newPrefix()
		return func(t *testing.T, lim storetest.Limits) store.Backend {
			return openStore(t, connect(t, shared.ClientURL()), Options{Prefix: prefix, AuditMax: lim.AuditMax,
				MaxFamiliesPerUser: lim.MaxFamiliesPerUser})
		}
	}})
}
