package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/netpoll"
)

// The floor server must carry a whole bench run (connect, probe, fan-out,
// counting) exactly as pushpull does, or its figures compare nothing: with
// writev, with io_uring, and with io_uring refused by the kernel (forced
// here), when it writes with writev instead.
func TestFloorServerCarriesABenchRun(t *testing.T) {
	refused := func(uint32) (*netpoll.Ring, error) { return nil, fmt.Errorf("io_uring_setup: %w", syscall.EPERM) }
	for _, tt := range []struct {
		name string
		opt  FloorOptions
		// wantLog: what the server's last log line must say.
		wantLog []string
	}{
		{"writev", FloorOptions{}, []string{"floor server (writev)"}},
		{"io_uring", FloorOptions{Uring: true}, []string{"floor server (io_uring)", "0 written with writev"}},
		{"io_uring refused", FloorOptions{Uring: true, newRing: refused},
			[]string{"io_uring refused, writing with writev", "floor server (writev)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.opt.Uring && tt.opt.newRing == nil {
				r, err := netpoll.NewRing(8)
				if err != nil {
					t.Skipf("io_uring refused here: %v", err)
				}
				r.Close()
			}
			log := runFloor(t, tt.opt)
			for _, want := range tt.wantLog {
				if !strings.Contains(log, want) {
					t.Errorf("server log %q, want %q in it", log, want)
				}
			}
		})
	}
}

// runFloor runs a bench against a floor server and returns the server's
// log once it has stopped.
func runFloor(t *testing.T, opt FloorOptions) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var log bytes.Buffer // written by the server's goroutine only, read after it ends
	done := make(chan error, 1)
	go func() { done <- ServeFloor(ctx, ln, slog.New(slog.NewTextHandler(&log, nil)), opt) }()
	cfg := testConfig("http://" + ln.Addr().String())
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res, 20)
	if res.Connect.ServerCount != 20 {
		t.Errorf("floor server counted %d connections, want 20", res.Connect.ServerCount)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("floor server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("floor server did not stop")
	}
	return log.String()
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
