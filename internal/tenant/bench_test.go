package tenant

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/store"
)

// BenchmarkDirectoryMemory loads 10,000 tenants and reports the heap they
// take per tenant: held only (idle), and after each verified a signature
// (its signer built). The bound is 1 KiB per tenant.
func BenchmarkDirectoryMemory(b *testing.B) {
	const n = 10000
	reg := newMemRegistry()
	for i := range n {
		_, _ = reg.PutTenant(context.Background(), store.Tenant{ClientID: fmt.Sprintf("%032x", i), Host: "push.example.com", Origin: OriginOperator})
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var idle, active float64
	for range b.N {
		before := heap()
		d := NewDirectory(reg, Options{GlobalKey: []byte(global), Algo: channel.SHA1}, log)
		if err := d.Load(context.Background()); err != nil {
			b.Fatal(err)
		}
		held := heap()
		for i := range n {
			t, err := d.Lookup(context.Background(), fmt.Sprintf("%032x", i), "push.example.com")
			if err != nil {
				b.Fatal(err)
			}
			t.Signer().Verify("x", "00")
		}
		signed := heap()
		idle, active = float64(held-before)/n, float64(signed-before)/n
		runtime.KeepAlive(d)
	}
	b.ReportMetric(idle, "B/tenant-idle")
	b.ReportMetric(active, "B/tenant-active")
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
