package stacks

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// A goroutine of this module blocked on a mutex shows up once, with its
// count, whatever its arguments; goroutines of no interest do not.
func TestSummaryGroupsOurBlockedGoroutines(t *testing.T) {
	var mu sync.Mutex
	mu.Lock()
	var started, done sync.WaitGroup
	for range 3 {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			blockedOn(&mu)
		}()
	}
	started.Wait()
	var s string
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s, "3 x [sync.Mutex.Lock]") { // until all three block
		if time.Now().After(deadline) {
			t.Fatalf("the three blocked goroutines are not one group:\n%s", s)
		}
		s = Summary()
	}
	mu.Unlock()
	done.Wait()
	if !strings.Contains(s, "internal/stacks.blockedOn() at stacks_test.go:") {
		t.Errorf("summary lacks the blocked function:\n%s", s)
	}
}

func blockedOn(mu *sync.Mutex) {
	mu.Lock()
	defer mu.Unlock()
}

func TestNormalise(t *testing.T) {
	dump := `goroutine 7 [chan receive, 2 minutes]:
github.com/khadga/khadga/signaling/hub.(*Hub).run(0xc000123, 0x4)
	/src/signaling/hub/hub.go:120 +0x1c5
created by github.com/khadga/khadga/signaling/hub.New in goroutine 1
	/src/signaling/hub/hub.go:80 +0x2a

goroutine 9 [chan receive]:
github.com/khadga/khadga/signaling/hub.(*Hub).run(0xc000999, 0x5)
	/src/signaling/hub/hub.go:120 +0x1c5
created by github.com/khadga/khadga/signaling/hub.New in goroutine 3
	/src/signaling/hub/hub.go:80 +0x2a

goroutine 11 [IO wait]:
internal/poll.runtime_pollWait(0x7f, 0x72)
	/go/src/runtime/netpoll.go:351 +0x85
`
	s := summarise(dump)
	want := "2 x [chan receive]\n  signaling/hub.(*Hub).run() at hub.go:120\n  created by signaling/hub.New at hub.go:80\n"
	if !strings.Contains(s, want) || strings.Contains(s, "pollWait") || !strings.Contains(s, ": 1 distinct stacks") {
		t.Errorf("summary:\n%s\nwant it to hold:\n%s", s, want)
	}
}
