package rest

import (
	"cmp"
	"context"
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

// callRecord is one call on its way; writeError fills in its outcome.
type callRecord struct {
	method, outcome string
	start           time.Time
}

// ctxCall carries the *callRecord of a top-level call.
const ctxCall ctxKey = -1

func (s *Server) startCall(ctx context.Context) (context.Context, *callRecord) {
	c := &callRecord{method: "unknown", outcome: "ok", start: time.Now()}
	return context.WithValue(ctx, ctxCall, c), c
}

// callFailed records the error code a call is answered with.
func callFailed(ctx context.Context, code string) {
	if c, ok := ctx.Value(ctxCall).(*callRecord); ok {
		c.outcome = code
	}
}

func (s *Server) endCall(c *callRecord) {
	took := time.Since(c.start)
	m := &s.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.calls == nil {
		m.calls = make(map[CallKey]uint64)
		m.latency = make(map[string]*stats.Histogram)
	}
	m.calls[CallKey{c.method, c.outcome}]++
	h := m.latency[c.method]
	if h == nil {
		ms := int64(time.Millisecond)
		h = stats.NewHistogram(ms, 2*ms+ms/2, 5*ms, 10*ms, 25*ms, 50*ms, 100*ms, 250*ms, 500*ms, 1000*ms, 2500*ms, 5000*ms)
		m.latency[c.method] = h
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
