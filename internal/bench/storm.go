package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// StormResult is a reconnect storm (Config.Storm): every subscriber is
// dropped, the publishes are sent while nobody is connected, and all
// reconnect with the mid of the last message they had within the window.
// Each must then recover exactly what it missed; the deliveries are
// counted in Result.Deliveries as usual.
type StormResult struct {
	// Dropped is how many subscribers were disconnected; Reconnected how
	// many came back.
	Dropped     int          `json:"dropped"`
	Reconnected int          `json:"reconnected"`
	Failed      int          `json:"failed"`
	Errors      []ErrorCount `json:"errors,omitempty"`
	// MissedPerClient is the publishes each subscriber missed (sent while
	// it was away).
	MissedPerClient int64 `json:"missed_per_client"`
	// WindowSec is the reconnect window asked for; ReconnectSec how long
	// reconnecting all of them took; RecoverSec from the first reconnect to
	// the last recovered message.
	WindowSec    float64 `json:"window_s"`
	ReconnectSec float64 `json:"reconnect_s"`
	RecoverSec   float64 `json:"recover_s"`
	// RSSSteady is the server's RSS with everyone connected, just before
	// the drop; RSSPeak the most sampled from the drop to the end of the
	// recovery (every 10 ms), and PeakRatio their ratio.
	RSSSteady int64   `json:"rss_steady"`
	RSSPeak   int64   `json:"rss_peak"`
	PeakRatio float64 `json:"peak_ratio"`
}

// DefaultStormWindow spreads the reconnections of a storm over this long.
const DefaultStormWindow = 5 * time.Second

// rssSampleEvery is how often a storm samples the server's memory.
const rssSampleEvery = 10 * time.Millisecond

// dropAll closes every subscriber's connection from the client side and
// waits for the readers and for the server to count them gone. The
// subscribers keep their last mid, as the official client does.
func (r *run) dropAll(ctx context.Context, before stat) int {
	r.dropping.Store(true)
	defer r.dropping.Store(false)
	dropped := 0
	for _, s := range r.subs {
		if s.conn != nil {
			_ = s.conn.Close()
			dropped++
		}
	}
	r.readers.Wait()
	for _, s := range r.subs {
		s.conn, s.connected = nil, false
	}
	// The server notices a closed socket on its next read; until it does the
	// connection still counts, and a reconnect would find it subscribed.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := r.serverStat(ctx)
		if err != nil || st.websockets <= before.websockets || sleepCtx(ctx, 50*time.Millisecond) != nil {
			break
		}
	}
	return dropped
}

// rssSampler records the most resident memory of a process seen while it
// runs.
type rssSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done sync.WaitGroup
}

func startRSSSampler(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{})}
	if pid == 0 {
		return s
	}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		t := time.NewTicker(rssSampleEvery)
		defer t.Stop()
		for {
			if rss, _, err := procRSS(pid); err == nil && rss > s.peak.Load() {
				s.peak.Store(rss)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops sampling and returns the peak.
func (s *rssSampler) finish() int64 {
	close(s.stop)
	s.done.Wait()
	return s.peak.Load()
}

// reconnectAll reconnects the subscribers that were dropped, spread evenly
// over the storm window, each with its last mid so the server replays what
// it missed.
func (r *run) reconnectAll(ctx, subsCtx context.Context, st *StormResult) error {
	var back []*sub
	for _, s := range r.subs {
		if s.wasConnected {
			back = append(back, s)
		}
	}
	rate := float64(len(back)) / r.cfg.StormWindow.Seconds()
	t0 := time.Now()
	r.stormStart.Store(t0.UnixNano())
	errs0 := r.connectErrs.list()
	if err := r.connectAll(ctx, subsCtx, back, rate); err != nil {
		return err
	}
	st.ReconnectSec = time.Since(t0).Seconds()
	for _, s := range back {
		if s.connected {
			st.Reconnected++
		}
	}
	st.Failed = len(back) - st.Reconnected
	st.Errors = subtractCounts(r.connectErrs.list(), errs0)
	return nil
}

// subtractCounts returns the counts in after that are not in before.
func subtractCounts(after, before []ErrorCount) []ErrorCount {
	prev := make(map[string]int, len(before))
	for _, e := range before {
		prev[e.Error] = e.Count
	}
	var out []ErrorCount
	for _, e := range after {
		if n := e.Count - prev[e.Error]; n > 0 {
			out = append(out, ErrorCount{Error: e.Error, Count: n})
		}
	}
	return out
}
