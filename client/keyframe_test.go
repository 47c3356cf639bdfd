package client

import (
	"testing"
	"time"
)

// TestKeyframeRequestsSpaced: receivers' picture-loss reports reach the
// source at most once every minKeyframeInterval, however many come.
func TestKeyframeRequestsSpaced(t *testing.T) {
	var g keyframeGate
	t0 := time.Now()
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{
		{0, true},
		{time.Millisecond, false},
		{minKeyframeInterval - time.Millisecond, false},
		{minKeyframeInterval, true},
		{minKeyframeInterval + 10*time.Millisecond, false},
		{3 * minKeyframeInterval, true},
	} {
		if got := g.allow(t0.Add(tc.at)); got != tc.want {
			t.Errorf("a request at +%v: allowed %v, want %v", tc.at, got, tc.want)
		}
	}
}
