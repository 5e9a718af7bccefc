package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// publishGrace is how far past the planned duration publishers that fell
// behind may go on; what they could not send by then is reported as not sent.
const publishGrace = time.Second

// publishAll runs the publishers until the planned publishes are sent or
// the duration (plus grace) is over. Publish i is due at start + i/rate;
// publishers take the next due publish from a shared counter, so a slow
// answer on one connection is made up by the others.
func (r *run) publishAll(ctx context.Context, start time.Time, alive []int) {
	deadline := start.Add(r.cfg.Duration + publishGrace)
	var next atomic.Int64
	var wg sync.WaitGroup
	for p := range r.cfg.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.publisher(ctx, p, &next, start, deadline, alive)
		}()
	}
	wg.Wait()
}

func (r *run) publisher(ctx context.Context, p int, next *atomic.Int64, start, deadline time.Time, alive []int) {
	c := &httpConn{addr: r.pubAddr, host: r.pubHost, dialTimeout: r.cfg.DialTimeout}
	defer c.close()
	var body []byte
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	interval := float64(time.Second) / r.cfg.Rate
	for {
		seq := next.Add(1) - 1
		if seq >= r.planned {
			return
		}
		due := start.Add(time.Duration(float64(seq) * interval))
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		now := time.Now()
		if now.After(deadline) || ctx.Err() != nil {
			return
		}
		target := r.fanoutPub
		if !r.fanout {
			i := alive[rand.IntN(len(alive))]
			r.targets[seq].Store(int32(i + 1))
			target = r.subs[i].pubURL
		}
		body = appendBody(body[:0], now.UnixNano(), seq, r.cfg.Payload)
		a, err := c.do(ctx, "POST", target, body, publishTimeout)
		rtt := time.Since(now)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			r.publishedBad.Add(1)
			r.publishErrs.add(errKind(err))
		case a.status != 200:
			r.publishedBad.Add(1)
			r.publishErrs.add(fmt.Sprintf("HTTP %d: %.100s", a.status, bytes.TrimSpace(a.body)))
		default:
			r.publishedOK.Add(1)
			r.rtt.record(p, rtt)
		}
	}
}

// probe publishes an untimed message to the subscribers that have not
// received anything yet, again every 200 ms, until all have or the ready
// timeout passes. A WebSocket subscription is attached after the handshake
// answer, so a publish right after connecting could miss it; and a
// long-polling subscriber gets its first mid from the probe, from which its
// next polls recover anything published between two polls.
func (r *run) probe(ctx context.Context) (ready, unready int) {
	c := &httpConn{addr: r.pubAddr, host: r.pubHost, dialTimeout: r.cfg.DialTimeout}
	defer c.close()
	deadline := time.Now().Add(r.cfg.ReadyTimeout)
	body := []byte(`{"bench":"ready"}`)
	var waiting []*sub
	for _, s := range r.subs {
		if s.alive.Load() {
			waiting = append(waiting, s)
		}
	}
	for {
		// Drop the subscribers that are ready (or gone).
		rest := waiting[:0]
		for _, s := range waiting {
			if !s.ready.Load() && s.alive.Load() {
				rest = append(rest, s)
			}
		}
		waiting = rest
		if len(waiting) == 0 || !time.Now().Before(deadline) || ctx.Err() != nil {
			break
		}
		if r.fanout {
			r.probePublish(ctx, c, r.fanoutPub, body)
		} else {
			for i := 0; i < len(waiting); i += probeBatch {
				batch := waiting[i:min(i+probeBatch, len(waiting))]
				target := []byte("/pub/?CHANNEL_ID=")
				for j, s := range batch {
					if j > 0 {
						target = append(target, '/')
					}
					target = append(target, s.pubURL[len("/pub/?CHANNEL_ID="):]...)
				}
				r.probePublish(ctx, c, target, body)
			}
		}
		if sleepCtx(ctx, 200*time.Millisecond) != nil {
			break
		}
	}
	for _, s := range r.subs {
		if s.alive.Load() {
			if s.ready.Load() {
				ready++
			} else {
				unready++
			}
		}
	}
	return ready, unready
}

func (r *run) probePublish(ctx context.Context, c *httpConn, target, body []byte) {
	a, err := c.do(ctx, "POST", target, body, publishTimeout)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			r.logf("readiness probe publish failed: %v", err)
		}
	case a.status != 200:
		r.logf("readiness probe publish answered HTTP %d: %.100s", a.status, bytes.TrimSpace(a.body))
	}
}
