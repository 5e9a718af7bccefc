package server

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/redistest"
)

// probe is one GET answer: status and body.
type probe struct {
	code int
	body string
}

// ask GETs u and returns its status and body; code 0 when the request
// failed.
func ask(u string) probe {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return probe{body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return probe{resp.StatusCode, string(b)}
}

// holdUntil wraps h so that requests to the health routes wait for release
// before the real handler answers them; arrived gets one value per such
// request once it is held.
func holdUntil(h http.Handler, arrived chan<- struct{}, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			arrived <- struct{}{}
			<-release
		}
		h.ServeHTTP(w, r)
	})
}

// TestReadyzFailsWhileDrainingHealthzDoesNot: requests that reach the
// health routes before a graceful stop and are answered during the drain
// get /readyz 503 "draining" and /healthz 200, on both listeners, whether
// the node is alone or in a cluster (where Redis is still up).
func TestReadyzFailsWhileDrainingHealthzDoesNot(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { readyzWhileDraining(t, "") })
	t.Run("cluster", func(t *testing.T) { readyzWhileDraining(t, redistest.Start(t).URL()) })
}

func readyzWhileDraining(t *testing.T, redisURL string) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECRET"
	cfg.Redis = redisURL
	cfg.ShutdownTimeout = time.Minute // the held requests must be answered
	arrived := make(chan struct{}, 4)
	draining := make(chan struct{})
	r := startWith(t, cfg, func(s *Server) {
		s.http.Handler = holdUntil(s.http.Handler, arrived, draining)
		s.internal.Handler = holdUntil(s.internal.Handler, arrived, draining)
		// Shutdown runs its hooks once it has begun, after the server
		// has stopped being ready.
		var once sync.Once
		s.http.RegisterOnShutdown(func() { once.Do(func() { close(draining) }) })
	})
	urls := []string{r.URL + "/readyz", r.URL + "/healthz", r.Internal + "/readyz", r.Internal + "/healthz"}
	got := make([]probe, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = ask(u)
		}()
	}
	for range urls {
		<-arrived
	}
	r.BeginStop() // the stop starts while all four are held
	wg.Wait()
	r.Stop(t)
	for i, u := range urls {
		want := probe{http.StatusOK, "ok\n"}
		if strings.HasSuffix(u, "/readyz") {
			want = probe{http.StatusServiceUnavailable, "draining\n"}
		}
		if got[i] != want {
			t.Errorf("%s while draining: %d %q, want %d %q", u, got[i].code, got[i].body, want.code, want.body)
		}
	}
}

// waitStatus asks u until it answers want: the server offers no other
// signal that it has noticed Redis going or coming back.
func waitStatus(t *testing.T, u string, want int) probe {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := ask(u)
		if p.code == want {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within 30 s; last %d %q", u, want, p.code, p.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReadyzFollowsRedis: a cluster node is not ready while Redis is down
// and ready again once it is back, and live throughout: a restart would
// not bring Redis back and would drop the node's connections.
func TestReadyzFollowsRedis(t *testing.T) {
	redis := redistest.Start(t)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECRET"
	cfg.Redis = redis.URL()
	r := start(t, cfg)
	for _, base := range []string{r.URL, r.Internal} {
		if p := ask(base + "/readyz"); p != (probe{http.StatusOK, "ready\n"}) {
			t.Fatalf("%s/readyz with Redis up: %d %q", base, p.code, p.body)
		}
	}
	// The metrics say the same: healthy, and the node has timed its
	// heartbeat's round trip.
	if m := scrapeMetrics(t, r.Internal); m.value("pushpull_redis_healthy") != 1 || m.value("pushpull_redis_round_trip_seconds") < 1 {
		t.Errorf("with Redis up: redis_healthy %v, round trips %v", m.value("pushpull_redis_healthy"), m.value("pushpull_redis_round_trip_seconds"))
	}

	redis.Stop()
	for _, base := range []string{r.URL, r.Internal} {
		p := waitStatus(t, base+"/readyz", http.StatusServiceUnavailable)
		if !strings.HasPrefix(p.body, "redis unreachable: ") {
			t.Errorf("%s/readyz with Redis down: %q, want the Redis failure", base, p.body)
		}
		if p := ask(base + "/healthz"); p != (probe{http.StatusOK, "ok\n"}) {
			t.Errorf("%s/healthz with Redis down: %d %q", base, p.code, p.body)
		}
	}
	if m := scrapeMetrics(t, r.Internal); m.value("pushpull_redis_healthy") != 0 {
		t.Errorf("with Redis down: redis_healthy %v, want 0", m.value("pushpull_redis_healthy"))
	}

	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{r.URL, r.Internal} {
		if p := waitStatus(t, base+"/readyz", http.StatusOK); p.body != "ready\n" {
			t.Errorf("%s/readyz with Redis back: %q", base, p.body)
		}
		if p := ask(base + "/healthz"); p != (probe{http.StatusOK, "ok\n"}) {
			t.Errorf("%s/healthz with Redis back: %d %q", base, p.code, p.body)
		}
	}
	if m := scrapeMetrics(t, r.Internal); m.value("pushpull_redis_healthy") != 1 || m.value("pushpull_redis_reconnects_total") < 1 {
		t.Errorf("with Redis back: redis_healthy %v, reconnects %v; want 1 and at least 1",
			m.value("pushpull_redis_healthy"), m.value("pushpull_redis_reconnects_total"))
	}
}
