package rest

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/stats"
)

// callMetrics counts REST calls by method and outcome and times them by
// method, for the metrics exporter. A REST call costs a registry read or
// more, so one lock per call is nothing; the labels are bounded by the
// registered methods (anything else is "unknown") and the error codes the
// code base defines.
type callMetrics struct {
	mu      sync.Mutex
	calls   map[CallKey]uint64
	latency map[string]*stats.Histogram // ns
}

// CallKey labels a count of calls.
type CallKey struct {
	// Method is the registered name, or "unknown" for a name no method has.
	Method string
	// Outcome is "ok" or the error code answered (error of the envelope).
	Outcome string
}

// countCall records a call when it has been answered: by its registered
// method (the name the client sent may be anything) and error code.
func (s *Server) countCall(start time.Time, call *callLog) {
	took := time.Since(start)
	method := "unknown"
	if m, ok := s.lookup(call.method); ok {
		method = strings.ToLower(m.Name)
	}
	outcome := cmp.Or(call.code, "ok")
	m := &s.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.calls == nil {
		m.calls = make(map[CallKey]uint64)
		m.latency = make(map[string]*stats.Histogram)
	}
	m.calls[CallKey{method, outcome}]++
	h := m.latency[method]
	if h == nil {
		ms := int64(time.Millisecond)
		h = stats.NewHistogram(ms, 2*ms+ms/2, 5*ms, 10*ms, 25*ms, 50*ms, 100*ms, 250*ms, 500*ms, 1000*ms, 2500*ms, 5000*ms)
		m.latency[method] = h
	}
	h.Observe(int64(took))
}

// CallCount is the calls of one method with one outcome.
type CallCount struct {
	CallKey
	Calls uint64
}

// MethodLatency is the time calls of one method took, in nanoseconds, from
// the request's arrival to the answer written.
type MethodLatency struct {
	Method  string
	Latency stats.Snapshot
}

// Calls reads the call counters, sorted by method and outcome.
func (s *Server) Calls() ([]CallCount, []MethodLatency) {
	m := &s.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	calls := make([]CallCount, 0, len(m.calls))
	for k, n := range m.calls {
		calls = append(calls, CallCount{k, n})
	}
	lat := make([]MethodLatency, 0, len(m.latency))
	for method, h := range m.latency {
		lat = append(lat, MethodLatency{method, h.Snapshot()})
	}
	slices.SortFunc(calls, func(a, b CallCount) int {
		return cmp.Or(strings.Compare(a.Method, b.Method), strings.Compare(a.Outcome, b.Outcome))
	})
	slices.SortFunc(lat, func(a, b MethodLatency) int { return strings.Compare(a.Method, b.Method) })
	return calls, lat
}
