package realtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/store/sqlite"
	"github.com/pushpull/pushpull/internal/tenant"
)

// BenchmarkSubscribePath is what a subscribe costs the server before any
// delivery: resolving the tenant, checking the CHANNEL_ID signatures,
// building the session and attaching it to the hub and broker, then
// detaching it. personal is today's path; shared is the same with 10,000
// tenants registered (the bound: within 5 % of personal, at the p99 too).
func BenchmarkSubscribePath(b *testing.B) {
	for _, mode := range []string{"personal", "shared-10000-tenants"} {
		b.Run(mode, func(b *testing.B) {
			_, srv, stop := benchServer(b)
			defer stop()
			key := []byte("k")
			clientID := ""
			if mode != "personal" {
				dir := loadTenants(b, 10000, "push.example.com")
				srv.opt.Tenants = dir
				clientID = fmt.Sprintf("%032x", 5000)
				t, err := dir.Lookup(context.Background(), clientID, "push.example.com")
				if err != nil {
					b.Fatal(err)
				}
				key = []byte(t.Key)
			}
			signer := channel.NewSigner(key, channel.SHA1)
			ids := []string{signer.SignChannel(channel.ID{1, 2, 3}), signer.SignChannel(channel.ID{4, 5, 6})}
			target := "http://push.example.com/sub/?CHANNEL_ID=" + url.QueryEscape(ids[0]+"/"+ids[1]) + "&revision=19"
			if clientID != "" {
				target += "&clientId=" + clientID
			}
			w := httptest.NewRecorder()
			times := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				r := httptest.NewRequest(http.MethodGet, target, nil)
				r, ok := srv.withTenant(w, r, errWrongClientID, false)
				if !ok {
					b.Fatalf("tenant refused: %s", w.Body)
				}
				sess, err := srv.openSession(r.Context(), r.URL.Query())
				if err != nil {
					b.Fatal(err)
				}
				if err := sess.subscribe(r.Context()); err != nil {
					b.Fatal(err)
				}
				sess.detach()
				times = append(times, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
		})
	}
}

// loadTenants registers n tenants on host in a SQLite registry
// (one transaction: the benchmark measures the lookup, not the inserts)
// and returns a directory holding them.
func loadTenants(b *testing.B, n int, host string) *tenant.Directory {
	b.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "registry.db"), "portal.test")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	for i := range n {
		if _, err := st.PutTenant(context.Background(), store.Tenant{ClientID: fmt.Sprintf("%032x", i), Host: host, Origin: store.TenantOperator}); err != nil {
			b.Fatal(err)
		}
	}
	dir := tenant.NewDirectory(st, tenant.Options{GlobalKey: []byte("k"), Algo: channel.SHA1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := dir.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	if dir.Len() != n {
		b.Fatalf("%d tenants loaded, want %d", dir.Len(), n)
	}
	return dir
}

// BenchmarkSubscribeWebSocket is a whole WebSocket subscribe over a real
// socket (dial, handshake, subscription, close), the p50 and p99 of which
// are the subscribe latency a client sees; shared has 10,000 tenants.
func BenchmarkSubscribeWebSocket(b *testing.B) {
	for _, mode := range []string{"personal", "shared-10000-tenants"} {
		b.Run(mode, func(b *testing.B) {
			_, srv, stop := benchServer(b)
			defer stop()
			key := []byte("k")
			clientID := ""
			if mode != "personal" {
				dir := loadTenants(b, 10000, "127.0.0.1")
				srv.opt.Tenants = dir
				clientID = fmt.Sprintf("%032x", 5000)
				t, err := dir.Lookup(context.Background(), clientID, "127.0.0.1")
				if err != nil {
					b.Fatal(err)
				}
				key = []byte(t.Key)
			}
			ts := httptest.NewServer(srv.Handler())
			defer ts.Close()
			signer := channel.NewSigner(key, channel.SHA1)
			u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/sub/?CHANNEL_ID=" +
				url.QueryEscape(signer.SignChannel(channel.ID{1, 2, 3})+"/"+signer.SignChannel(channel.ID{4, 5, 6})) + "&revision=19"
			if clientID != "" {
				u += "&clientId=" + clientID
			}
			times := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				conn, _, _, err := ws.Dial(context.Background(), u)
				if err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(start))
				_ = conn.Close()
			}
			b.StopTimer()
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(times[len(times)/2].Nanoseconds()), "p50-ns")
		})
	}
}
