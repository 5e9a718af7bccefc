package stats

import (
	"slices"
	"sync"
	"testing"
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
