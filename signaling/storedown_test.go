package signaling

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/khadga/khadga/signaling/store"
)

// TestStoreDownAnswers503: a store that cannot be reached, or a change
// that lost to other writers of its record too often (a cluster's
// compare-and-swap giving up), is a 503 that asks for a retry, never the
// 401 of a bad refresh token or the 500 of a bug; other errors are left
// to the caller.
func TestStoreDownAnswers503(t *testing.T) {
	s := &Server{metrics: newMetrics(nil)}
	for _, c := range []struct {
		err       error
		down      bool
		retry     string
		inMessage string
	}{
		{fmt.Errorf("auth: refresh: %w", store.ErrUnavailable), true, "5", "cannot be reached"},
		{fmt.Errorf("auth: refresh: rotate family: %w", store.ErrConflict), true, "1", "too many changes"},
		{store.ErrNotFound, false, "", ""},
		{errors.New("disk on fire"), false, "", ""},
	} {
		w := httptest.NewRecorder()
		if down := s.storeDown(w, c.err); down != c.down {
			t.Fatalf("storeDown(%v) = %v, want %v", c.err, down, c.down)
		}
		if !c.down {
			if w.Body.Len() != 0 {
				t.Errorf("storeDown(%v) answered %s", c.err, w.Body)
			}
			continue
		}
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != c.retry ||
			!strings.Contains(w.Body.String(), `"code":"unavailable"`) || !strings.Contains(w.Body.String(), c.inMessage) {
			t.Errorf("storeDown(%v): %d (Retry-After %q) %s", c.err, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
}
