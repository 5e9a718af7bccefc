package rest

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// maxRequestAlloc is the bound on the transient memory of one
// unauthenticated request of at most 1 MiB.
const maxRequestAlloc = 16 << 20

// hostileBodies are 1 MiB bodies built to make the parameter decoder work
// out of proportion to their size.
func hostileBodies() map[string]struct{ ctype, body string } {
	const size = DefaultMaxBody
	fill := func(unit string, open, close string) string {
		var b strings.Builder
		b.WriteString(open)
		for b.Len()+len(unit)+len(close) < size {
			if b.Len() > len(open) {
				b.WriteByte(',')
			}
			b.WriteString(unit)
		}
		b.WriteString(close)
		return b.String()
	}
	var caseKeys strings.Builder
	caseKeys.WriteByte('{')
	for i := 0; caseKeys.Len() < size-32; i++ {
		if i > 0 {
			caseKeys.WriteByte(',')
		}
		fmt.Fprintf(&caseKeys, `"k%d":0,"K%d":0`, i, i)
	}
	caseKeys.WriteByte('}')
	var form strings.Builder
	for i := 0; form.Len() < size-16; i++ {
		fmt.Fprintf(&form, "k%d=&K%d=&", i, i)
	}
	var multi strings.Builder
	for multi.Len() < size-64 {
		multi.WriteString("--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\n\r\n")
	}
	multi.WriteString("--b--\r\n")
	atCap := "[" + strings.Repeat("{},", MaxJSONValues-2) + "{}]"
	return map[string]struct{ ctype, body string }{
		"json at the value cap": {"application/json", atCap},
		"json empty objects":    {"application/json", fill("{}", "[", "]")},
		"json empty arrays":     {"application/json", fill("[]", "[", "]")},
		"json numbers":          {"application/json", fill("0", "[", "]")},
		"json case keys":        {"application/json", caseKeys.String()},
		"json nested":           {"application/json", strings.Repeat("[", 400_000) + strings.Repeat("]", 400_000)},
		"form case keys":        {"application/x-www-form-urlencoded", form.String()},
		"form text/plain":       {"text/plain", strings.Repeat("a[]=&", size/5)},
		"multipart files":       {"multipart/form-data; boundary=b", multi.String()},
	}
}

func serveOnce(s *Server, query, ctype, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "http://x/rest/pull.echo"+query, strings.NewReader(body))
	r.Header.Set("Content-Type", ctype)
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

// TestHostileBodyCost holds issue 11's bound: one unauthenticated 1 MiB
// request allocates at most 16 MiB in all while it is served (TotalAlloc
// counts every allocation, so the figure does not depend on GC timing).
// The same bodies with a valid token stay within the bound too.
func TestHostileBodyCost(t *testing.T) {
	s := New(fakeAuth{}, Options{})
	s.Register(Method{Name: "pull.echo", Scope: "pull", Handler: func(_ context.Context, _ Caller, p Params) (any, error) { return len(p), nil }})
	for name, b := range hostileBodies() {
		for _, query := range []string{"", "?auth=good"} {
			t.Run(name+query, func(t *testing.T) {
				if len(b.body) > DefaultMaxBody {
					t.Fatalf("body is %d bytes, over the limit", len(b.body))
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				w := serveOnce(s, query, b.ctype, b.body)
				runtime.ReadMemStats(&after)
				if query == "" && w.Code/100 != 4 {
					t.Errorf("status %d, want a 4xx: %s", w.Code, w.Body)
				}
				if got := after.TotalAlloc - before.TotalAlloc; got > maxRequestAlloc {
					t.Errorf("one request allocated %d MiB, want at most %d MiB", got>>20, maxRequestAlloc>>20)
				} else {
					t.Logf("status %d, %d KiB allocated", w.Code, got>>10)
				}
			})
		}
	}
}

// BenchmarkHostileBody measures the CPU one hostile unauthenticated request
// costs (the bound is 50 ms each).
func BenchmarkHostileBody(b *testing.B) {
	s := New(fakeAuth{}, Options{})
	s.Register(Method{Name: "pull.echo", Scope: "pull", Handler: func(_ context.Context, _ Caller, p Params) (any, error) { return nil, nil }})
	for name, hb := range hostileBodies() {
		b.Run(strings.ReplaceAll(name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serveOnce(s, "", hb.ctype, hb.body)
			}
		})
	}
}

// A large body's buffer is reused by the next request once its parameters
// are read, so that a flood of 1 MiB bodies does not allocate (and make
// the collector clear) a megabyte per request. sync.Pool may drop its
// buffers at any collection, and under the race detector drops a quarter of
// what it is given, so the best of twenty requests is taken.
func TestRequestBodyBuffersAreReused(t *testing.T) {
	s := New(fakeAuth{}, Options{})
	s.Register(Method{Name: "pull.echo", Scope: "pull", Handler: func(_ context.Context, _ Caller, p Params) (any, error) { return nil, nil }})
	// Invalid JSON that the decoder gives up on at its end: it keeps
	// nothing, so what a request allocates is mostly its body's buffer.
	body := "[" + strings.Repeat(" ", 1<<20-2) + "x"
	serveOnce(s, "", "application/json", body)
	best := uint64(math.MaxUint64)
	for range 20 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		serveOnce(s, "", "application/json", body)
		runtime.ReadMemStats(&after)
		best = min(best, after.TotalAlloc-before.TotalAlloc)
	}
	if best > 256<<10 {
		t.Fatalf("a 1 MiB request after another allocated at least %d KiB; want its body's buffer reused", best>>10)
	}
}
