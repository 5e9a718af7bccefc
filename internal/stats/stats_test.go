package stats

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	h := NewHistogram(1, 10, 100)
	for _, v := range []int64{0, 1, 2, 10, 11, 100, 1000, 5000} {
		h.Observe(v)
	}
	s := h.Snapshot()
	if want := []uint64{2, 4, 6}; !slices.Equal(s.Cumulative, want) {
		t.Errorf("cumulative = %v, want %v", s.Cumulative, want)
	}
	if s.Count != 8 || s.Sum != 6124 {
		t.Errorf("count %d sum %d, want 8 and 6124", s.Count, s.Sum)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	h := NewHistogram(5)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				h.Observe(int64(i%10 + g))
			}
		})
	}
	wg.Wait()
	if s := h.Snapshot(); s.Count != 4000 {
		t.Errorf("count = %d, want 4000", s.Count)
	}
}

func TestHistogramBoundsMustAscend(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for descending bounds")
		}
	}()
	NewHistogram(10, 5)
}

func TestHistogramObserveAllocatesNothing(t *testing.T) {
	h := NewHistogram(1, 10, 100)
	if n := testing.AllocsPerRun(100, func() { h.Observe(42) }); n != 0 {
		t.Errorf("Observe allocates %v times", n)
	}
}

// BenchmarkObserve is one observation, single-threaded and with every
// core observing into the same histogram (the fan-out case: every writer
// records its writes in one histogram).
func BenchmarkObserve(b *testing.B) {
	h := NewHistogram(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
	b.Run("serial", func(b *testing.B) {
		for i := range b.N {
			h.Observe(int64(i & 3))
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h.Observe(1)
			}
		})
	})
}

// BenchmarkWriteRecord is what the writer adds for a socket write in the
// metrics' sample (realtime.counters.wrote): the batch size, a clock read
// and the latency.
func BenchmarkWriteRecord(b *testing.B) {
	ms := int64(time.Millisecond)
	batch := NewHistogram(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
	latency := NewHistogram(ms/10, ms/4, ms/2, ms, 2*ms+ms/2, 5*ms, 10*ms, 25*ms, 50*ms, 100*ms, 250*ms, 500*ms, 1000*ms, 2500*ms, 5000*ms, 10000*ms)
	created := time.Now()
	b.ReportAllocs()
	for range b.N {
		batch.Observe(1)
		latency.Observe(int64(time.Since(created)))
	}
}
