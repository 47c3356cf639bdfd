//go:build linux

// Medians over rounds, percentiles, rounding.

package main

import (
	"math"
	"slices"
)

// summarize sets the summary figures to the medians of the rounds.
func (r *targetResult) summarize() {
	if len(r.OpenRounds) > 0 {
		o := *r.OpenRounds[0]
		o.Seconds = median(r.OpenRounds, func(x *openResult) float64 { return x.Seconds })
		o.PerSecond = median(r.OpenRounds, func(x *openResult) float64 { return x.PerSecond })
		r.Open = &o
	}
	r.RelayMax = relayMedian(r.RelayMaxRounds)
	r.RelayRate = relayMedian(r.RelayRateRounds)
}

func relayMedian(rounds []*relayResult) *relayResult {
	if len(rounds) == 0 {
		return nil
	}
	m := *rounds[0]
	f := func(get func(*relayResult) float64) float64 { return median(rounds, get) }
	m.PerSecond = f(func(x *relayResult) float64 { return x.PerSecond })
	m.P50ms = f(func(x *relayResult) float64 { return x.P50ms })
	m.P99ms = f(func(x *relayResult) float64 { return x.P99ms })
	m.P999ms = f(func(x *relayResult) float64 { return x.P999ms })
	m.Maxms = f(func(x *relayResult) float64 { return x.Maxms })
	m.ServerCPUCores = f(func(x *relayResult) float64 { return x.ServerCPUCores })
	m.ServerCPUMicrosPerSignal = f(func(x *relayResult) float64 { return x.ServerCPUMicrosPerSignal })
	m.ClientCPUCores = f(func(x *relayResult) float64 { return x.ClientCPUCores })
	m.NATSCPUCores = f(func(x *relayResult) float64 { return x.NATSCPUCores })
	m.ServerReadsPerSignal = f(func(x *relayResult) float64 { return x.ServerReadsPerSignal })
	m.ServerWritesPerSignal = f(func(x *relayResult) float64 { return x.ServerWritesPerSignal })
	m.Sent, m.Received, m.Samples, m.Dropped = 0, 0, 0, 0
	m.Errors = map[string]int64{}
	for _, x := range rounds {
		m.Sent += x.Sent
		m.Received += x.Received
		m.Samples += x.Samples
		m.Dropped += x.Dropped
		for k, v := range x.Errors {
			m.Errors[k] += v
		}
	}
	m.Rounds = len(rounds)
	return &m
}

// median returns the median of get over xs (the mean of the middle two for
// an even count).
func median[T any](xs []T, get func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = get(x)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return round((v[n/2-1]+v[n/2])/2, 3)
}

// percentile returns the q-quantile of sorted (nearest rank), 0 if empty.
func percentile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(ns int64) float64 { return round(float64(ns)/1e6, 3) }

// round rounds x to d decimals, so that the JSON stays readable.
func round(x float64, d int) float64 {
	p := math.Pow(10, float64(d))
	return math.Round(x*p) / p
}
