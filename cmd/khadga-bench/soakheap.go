//go:build linux

// The soak run's heap low-water mark.

package main

import (
	"context"
	"sync"
	"time"
)

// heapWatchPeriod is how often the soak run reads the in-use heap between
// samples.
const heapWatchPeriod = 2 * time.Second

// heapLow keeps each node's lowest in-use heap since the last sample. The
// in-use heap rises and falls with every collection cycle, so one read
// of it says little; its low water over an interval is read just after a
// cycle, and is close to what stays live: a leak raises it.
type heapLow struct {
	mu   sync.Mutex
	low  []int64 // per node; 0: not read since the last take
	done chan struct{}
}

// watchHeap reads every node's /metrics every heapWatchPeriod until ctx
// ends; the returned heapLow's wait waits for it to stop (before the
// settle, whose goroutine count a scrape in progress would raise).
func (st *soakTarget) watchHeap(ctx context.Context) *heapLow {
	h := &heapLow{low: make([]int64, len(st.nodes)), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(heapWatchPeriod)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for i, k := range st.nodes {
				if f, err := st.scrape(ctx, k); err == nil {
					h.note(i, f.HeapInuseBytes)
				}
			}
		}
	}()
	return h
}

func (h *heapLow) note(node int, inuse int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.low[node] == 0 || inuse < h.low[node] {
		h.low[node] = inuse
	}
}

// take returns node's low water since the last take, lowered to now (the
// in-use heap read with the sample), and starts a new interval.
func (h *heapLow) take(node int, now int64) int64 {
	if h == nil {
		return now
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	low := h.low[node]
	h.low[node] = 0
	if low == 0 || now < low {
		return now
	}
	return low
}

func (h *heapLow) wait() { <-h.done }
