package bench

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Latencies are counted in fixed log-linear buckets of microseconds, as HDR
// histograms do: values below subBuckets are exact, and every octave above
// is cut into subBuckets/2 equal buckets, so a reported quantile is at most
// 1/64 (1.6 %) above the true value. Memory does not grow with the run.
const (
	subBits    = 7
	subBuckets = 1 << subBits // 128
	// maxMicros caps recorded values (2^36 µs is 19 hours).
	maxMicros  = 1<<36 - 1
	numBuckets = (36-subBits+1)*(subBuckets/2) + subBuckets/2
)

// bucketOf returns the bucket of v (µs, 0 ≤ v ≤ maxMicros).
func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBits // ≥ 1
	return shift*(subBuckets/2) + int(v>>uint(shift))
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	shift := i/(subBuckets/2) - 1
	mant := uint64(i - shift*(subBuckets/2))
	return (mant+1)<<uint(shift) - 1
}

// histShard is one part of a recorder; connections are spread over shards so
// that concurrent readers rarely add to the same counters.
type histShard struct {
	counts [numBuckets]atomic.Uint64
	max    atomic.Uint64
}

// recorder counts latencies from many goroutines.
type recorder struct {
	shards []histShard
}

func newRecorder(shards int) *recorder {
	return &recorder{shards: make([]histShard, max(shards, 1))}
}

// record adds one latency to shard (any int; it is reduced modulo the shards).
func (r *recorder) record(shard int, d time.Duration) {
	v := uint64(max(d, 0) / time.Microsecond)
	v = min(v, maxMicros)
	s := &r.shards[shard%len(r.shards)]
	s.counts[bucketOf(v)].Add(1)
	for {
		m := s.max.Load()
		if v <= m || s.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// histogram is a merged, read-only copy of a recorder.
type histogram struct {
	counts [numBuckets]uint64
	total  uint64
	max    uint64
}

func (r *recorder) snapshot() *histogram {
	h := &histogram{}
	for i := range r.shards {
		s := &r.shards[i]
		for b := range s.counts {
			n := s.counts[b].Load()
			h.counts[b] += n
			h.total += n
		}
		h.max = max(h.max, s.max.Load())
	}
	return h
}

// quantile returns the value (µs) at or below which a fraction q of the
// counts lie, as the high end of its bucket capped by the maximum.
func (h *histogram) quantile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, n := range h.counts {
		seen += n
		if seen >= rank {
			return min(bucketHigh(i), h.max)
		}
	}
	return h.max
}

// Latency is a distribution of durations, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func (h *histogram) latency() Latency {
	ms := func(us uint64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.total,
		P50:   ms(h.quantile(0.50)),
		P90:   ms(h.quantile(0.90)),
		P99:   ms(h.quantile(0.99)),
		Max:   ms(h.max),
	}
}
