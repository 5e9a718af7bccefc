package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// The floor server must carry a whole bench run (connect, probe, fan-out,
// counting) exactly as pushpull does, or its figures compare nothing.
func TestFloorServerCarriesABenchRun(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeFloor(ctx, ln, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("floor server: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("floor server did not stop")
		}
	})
	cfg := testConfig("http://" + ln.Addr().String())
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res, 20)
	if res.Connect.ServerCount != 20 {
		t.Errorf("floor server counted %d connections, want 20", res.Connect.ServerCount)
	}
}

func TestFloorServerRefusesBadChannels(t *testing.T) {
	for _, list := range []string{"", "xyz", "0123456789abcdef0123456789abcdef/zz"} {
		if _, err := channelsOf(list); err == nil {
			t.Errorf("channelsOf(%q) = nil error, want a refusal", list)
		}
	}
	ids, err := channelsOf("0123456789abcdef0123456789abcdef.sig/fedcba9876543210fedcba9876543210")
	if err != nil || len(ids) != 2 || ids[1].String() != "fedcba9876543210fedcba9876543210" {
		t.Errorf("channelsOf(two signed/unsigned ids) = %v, %v", ids, err)
	}
}
