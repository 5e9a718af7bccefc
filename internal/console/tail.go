package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
)

// tailBuffer is how many messages a viewer may fall behind by; beyond it
// the oldest are dropped and the viewer is told how many.
const tailBuffer = 256

// tailWriteTimeout bounds each write to a viewer: a browser that stopped
// reading is cut rather than holding its handler until the connection dies.
const tailWriteTimeout = 10 * time.Second

// tailKeepAlive is how often an idle tail sends a comment line, so that
// proxies keep the stream open and a gone viewer is noticed.
const tailKeepAlive = 15 * time.Second

// viewer is one live tail: a hub subscriber whose Deliver only queues, so
// that a slow browser never holds up the hub, and drops the oldest
// message when its buffer is full (a console is not a client that
// recovers by mid).
type viewer struct {
	mu      sync.Mutex
	queue   []*hub.Delivery
	dropped int
	wake    chan struct{}
}

func newViewer() *viewer { return &viewer{wake: make(chan struct{}, 1)} }

// Deliver implements hub.Subscriber.
func (v *viewer) Deliver(d *hub.Delivery) {
	v.mu.Lock()
	if len(v.queue) == tailBuffer {
		copy(v.queue, v.queue[1:])
		v.queue = v.queue[:tailBuffer-1]
		v.dropped++
	}
	v.queue = append(v.queue, d)
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// take empties the queue.
func (v *viewer) take() ([]*hub.Delivery, int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	q, n := v.queue, v.dropped
	v.queue, v.dropped = nil, 0
	return q, n
}

// serveTail streams the messages of a channel (or a version 5 user) as
// server-sent events from the moment it is attached: "message" events
// carry an entry, "dropped" events how many were dropped for a slow
// viewer. The viewer counts as one connection in the channel's presence,
// which in a cluster is also what routes the channel's messages to this
// node.
func (c *Console) serveTail(w http.ResponseWriter, r *http.Request) {
	t, err := c.parseTarget(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	rc := http.NewResponseController(w)
	ctx := r.Context()
	v := newViewer()
	subs := []hub.Subscription{{Channel: t.ch}}
	chans := []channel.ID{t.ch}
	if err := c.opt.Broker.Attach(ctx, chans); err != nil {
		writeError(w, http.StatusBadGateway, "BROKER_ERROR", "attach: "+err.Error())
		return
	}
	c.opt.Hub.Attach(v, subs)
	defer func() {
		c.opt.Hub.Detach(v, subs)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := c.opt.Broker.Detach(dctx, chans); err != nil {
			c.opt.Log.Warn("console: tail detach failed", "err", err)
		}
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The first event says the subscription is in place: a message
	// published after the page sees it is in the stream.
	_ = rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
	if writeEvent(w, "ready", map[string]string{"channel": t.ch.String()}) != nil || rc.Flush() != nil {
		return
	}

	keep := time.NewTicker(tailKeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.stopped:
			return
		case <-keep.C:
			_ = rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case <-v.wake:
			_ = rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
			q, dropped := v.take()
			if dropped > 0 && writeEvent(w, "dropped", map[string]int{"count": dropped}) != nil {
				return
			}
			for _, d := range q {
				if err := writeEvent(w, "message", toEntry(d.Msg, d.Channel)); err != nil {
					return
				}
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

func writeEvent(w http.ResponseWriter, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, data)
	return err
}
