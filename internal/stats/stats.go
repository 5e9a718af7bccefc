// Package stats holds the histogram the hot paths observe into: one atomic
// add per bucket and one for the sum, no lock and no allocation, read by the
// metrics exporter at scrape time. Packages count plain events with
// sync/atomic counters of their own; this package is for distributions.
package stats

import "sync/atomic"

// Histogram counts observations into fixed buckets. Values are integers in
// a unit the owner chooses (nanoseconds, messages) and converts on export:
// an integer sum is one atomic add, where a float sum would need a
// compare-and-swap loop that contends under fan-out.
type Histogram struct {
	bounds []int64 // inclusive upper bounds, ascending
	counts []atomic.Uint64
	sum    atomic.Int64
}

// NewHistogram returns a histogram with the given inclusive upper bounds,
// which must ascend; values above the last go to an implicit +Inf bucket.
func NewHistogram(bounds ...int64) *Histogram {
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			panic("stats: histogram bounds must ascend")
		}
	}
	return &Histogram{bounds: append([]int64(nil), bounds...), counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe records v. A linear scan beats a binary search over the dozen
// bounds histograms here have, and the common (small) values stop early.
func (h *Histogram) Observe(v int64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(v)
}

// Snapshot is a histogram's state at one moment. Each field is read
// atomically but not the whole: a scrape racing an observation may see its
// bucket and not its sum, which the next scrape corrects.
type Snapshot struct {
	Bounds []int64
	// Cumulative[i] counts the observations ≤ Bounds[i].
	Cumulative []uint64
	Count      uint64
	Sum        int64
}

// Snapshot reads the histogram.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Bounds: h.bounds, Cumulative: make([]uint64, len(h.bounds)), Sum: h.sum.Load()}
	for i := range h.counts {
		s.Count += h.counts[i].Load()
		if i < len(h.bounds) {
			s.Cumulative[i] = s.Count
		}
	}
	return s
}
