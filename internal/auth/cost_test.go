package auth

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// One unauthenticated request of up to 1 MiB to /oauth/token/ allocates at
// most 16 MiB while it is served (issue 11's bound), whether the MiB comes
// as a query string or as a body.
func TestTokenRequestCost(t *testing.T) {
	f := newFixture(t)
	h := f.svc.TokenHandler()
	const size = 1 << 20
	pairs := strings.Repeat("a=&", size/3)
	cases := map[string]*http.Request{
		"query":      httptest.NewRequest(http.MethodGet, "http://x/oauth/token/?grant_type=refresh_token&"+pairs[:size-64], nil),
		"post body":  httptest.NewRequest(http.MethodPost, "http://x/oauth/token/", strings.NewReader(pairs)),
		"long value": httptest.NewRequest(http.MethodGet, "http://x/oauth/token/?client_secret="+strings.Repeat("%41", size/3-16), nil),
	}
	cases["post body"].Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			runtime.ReadMemStats(&after)
			if w.Code/100 != 4 {
				t.Errorf("status %d: %s", w.Code, w.Body)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
				t.Errorf("one request allocated %d MiB, want at most 16 MiB", got>>20)
			} else {
				t.Logf("status %d, %d KiB allocated", w.Code, got>>10)
			}
		})
	}
}

// BenchmarkTokenRequestLongValue measures the CPU of the costliest of the
// cases above (issue 11's bound is 50 ms per request).
func BenchmarkTokenRequestLongValue(b *testing.B) {
	f := newFixture(b)
	h := f.svc.TokenHandler()
	target := "http://x/oauth/token/?client_secret=" + strings.Repeat("%41", (1<<20)/3-16)
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, target, nil))
	}
}
