package signaling_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestReadinessWhileDraining: from the moment a shutdown begins (the
// clients are told to reconnect) /readyz answers 503, so that a load
// balancer that still reaches the node (a kept-alive connection, a
// request in flight) sends nobody new, while /healthz, which says only
// that the process lives, answers 200. (The store unreachable:
// TestStoreOnNATSUnavailable.) The handler is asked in process: the
// shutdown closes the listener at once, which a load balancer also
// takes for not ready.
func TestReadinessWhileDraining(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	probe := func(path string) int {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if r, h := probe("/readyz"), probe("/healthz"); r != http.StatusOK || h != http.StatusOK {
		t.Fatalf("serving: /readyz %d, /healthz %d; want 200 and 200", r, h)
	}
	c := s.Connect(t, s.User(t, "alice").AccessToken, nil)
	go s.Stop()
	c.Expect(proto.TypeReconnect)
	if r, h := probe("/readyz"), probe("/healthz"); r != http.StatusServiceUnavailable || h != http.StatusOK {
		t.Fatalf("draining: /readyz %d, /healthz %d; want 503 and 200", r, h)
	}
}
