package realtime

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/netpoll"
)

// ringModes are the writer pool's ways of writing: writev, io_uring where
// this kernel allows it, and io_uring refused (forced), when the pool must
// write with writev.
func ringModes(t *testing.T) []struct {
	name      string
	tweak     func(*Options)
	wantRings bool
} {
	refused := func(uint32) (*netpoll.Ring, error) { return nil, fmt.Errorf("io_uring_setup: %w", syscall.EPERM) }
	modes := []struct {
		name      string
		tweak     func(*Options)
		wantRings bool
	}{
		{"writev", func(*Options) {}, false},
		{"io_uring refused", func(o *Options) { o.RingWrites, o.newRing = true, refused }, false},
	}
	if r, err := netpoll.NewRing(8); err != nil {
		t.Logf("io_uring refused here, not tested: %v", err)
	} else {
		r.Close()
		modes = append(modes, struct {
			name      string
			tweak     func(*Options)
			wantRings bool
		}{"io_uring", func(o *Options) { o.RingWrites = true }, true})
	}
	return modes
}

// Every subscriber of a fan-out gets every message once and in order,
// whichever way the pool writes; with io_uring, one call writes to many of
// them.
func TestRingWritersFanOut(t *testing.T) {
	for _, mode := range ringModes(t) {
		t.Run(mode.name, func(t *testing.T) {
			ts := newTestServer(t, mode.tweak)
			if got := ts.rt.writers.rings > 0; got != mode.wantRings {
				t.Fatalf("%d io_uring writers, want some: %v", ts.rt.writers.rings, mode.wantRings)
			}
			ch := newChannel(t)
			const subscribers, messages = 40, 30
			clients := make([]*wsClient, subscribers)
			for i := range clients {
				clients[i] = ts.dial(t, ts.subQuery([]channel.ID{ch}, ""))
			}
			ts.waitSubscribers(t, ch, subscribers)
			for i := range messages {
				ts.publish(t, fmt.Sprintf(`{"i":%d}`, i), ch)
			}
			for c, client := range clients {
				for i := range messages {
					f := client.next(t)
					if want := fmt.Sprintf(`"i":%d`, i); !strings.Contains(string(f.Text), want) {
						t.Fatalf("subscriber %d, message %d: %s, want %s in it", c, i, f.Text, want)
					}
				}
			}
		})
	}
}
