package pullclient

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Run connects and calls handle with every event until ctx ends (it then
// returns nil), handle returns an error (returned as is), or reconnecting
// cannot help: the first connection failed (unless Config.KeepTrying), or
// the server refused the channels and there is no Config.Reload. handle is
// called from one goroutine at a time; while it runs, nothing is read from
// the server.
func Run(ctx context.Context, cfg Config, handle func(Event) error) error {
	cfg, err := cfg.normalized()
	if err != nil {
		return err
	}
	r := newRunner(cfg, handle)
	return r.run(ctx)
}

// Client is a running subscription started by Dial.
type Client struct {
	r      *runner
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// eventBuffer is how many events a Client holds for a slow reader before
// it stops reading from the server (which then, past its own send queue,
// drops the connection; the client recovers by mid).
const eventBuffer = 64

// Dial connects and returns once the first connection is up (its
// Connected event is the first on Events). ctx bounds only the dialing: the
// client then runs until Close. The first connection's failure is
// returned unless Config.KeepTrying is set.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c := &Client{events: make(chan Event, eventBuffer), cancel: cancel, done: make(chan struct{})}
	up := make(chan struct{})
	var once sync.Once
	c.r = newRunner(cfg, func(e Event) error {
		select {
		case c.events <- e:
		case <-runCtx.Done():
			return runCtx.Err()
		}
		if _, ok := e.(Connected); ok {
			once.Do(func() { close(up) })
		}
		return nil
	})
	go func() {
		defer close(c.done)
		defer close(c.events)
		err := c.r.run(runCtx)
		if errors.Is(err, context.Canceled) && runCtx.Err() != nil {
			err = nil
		}
		c.err = err
	}()
	select {
	case <-up:
		return c, nil
	case <-c.done:
		cancel()
		if c.err == nil {
			c.err = errors.New("pullclient: stopped before connecting")
		}
		return nil, c.err
	case <-ctx.Done():
		cancel()
		<-c.done
		return nil, ctx.Err()
	}
}

// Events delivers the client's events in order. It is closed when the
// client stops; Err then says why.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the client has stopped.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped: nil after Close, or the error that ended
// it. It is meaningful once Done is closed.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// LastMID is the id of the last message received, the one the client
// resumes after when it reconnects.
func (c *Client) LastMID() string { return c.r.lastMID() }

// Close stops the client, closes its connection, and waits until every
// goroutine it started has ended. It returns the error that had already
// ended the client, if any. Events not yet read are dropped.
func (c *Client) Close() error {
	c.cancel()
	for range c.events { // unblock a send in progress
	}
	<-c.done
	return c.err
}

// recentIDs is how many message ids are remembered to drop a second copy,
// as the official clients remember the last 10.
const recentIDs = 10

// runner is one Run: the config in use, the last message id, and the
// state between connections. Only its goroutine touches it, except mid,
// which LastMID reads.
type runner struct {
	cfg    Config
	handle func(Event) error
	decode decoder

	mid    atomic.Pointer[string]
	recent []string // the last recentIDs ids delivered, oldest first

	// Version 5 calls: the WebSocket they go out on, the calls waiting for
	// an answer, and the lock that keeps the reader's writes and the
	// callers' apart.
	callMu  sync.Mutex
	rpcConn net.Conn
	pending map[int64]chan callResult
	nextID  atomic.Int64
	writeMu sync.Mutex

	restarting bool // server_restart seen: the next wait is ServerRestartDelay
	reload     bool // fetch a new config before the next connection
	reconnect  bool // reconnect at once (channel switched, config reloaded)
}

func newRunner(cfg Config, handle func(Event) error) *runner {
	r := &runner{cfg: cfg, handle: handle, decode: decoderFor(cfg.Version, cfg.Format), pending: map[int64]chan callResult{}}
	mid := cfg.MID
	r.mid.Store(&mid)
	return r
}

func (r *runner) lastMID() string { return *r.mid.Load() }

func (r *runner) setMID(mid string) { r.mid.Store(&mid) }

// errSwitch ends a connection that must be made again at once, with a
// replaced channel or a reloaded config.
var errSwitch = errors.New("reconnecting with a new channel or config")

// run connects, and reconnects after each loss, until ctx ends or an error
// cannot be helped by reconnecting.
func (r *runner) run(ctx context.Context) error {
	backoff := r.cfg.Backoff.Min
	everConnected := false
	onLongPoll := r.cfg.Transport == LongPoll
	var longPollSince time.Time
	for {
		var err error
		connected := false
		if r.reload {
			err = r.reloadConfig(ctx)
		}
		if err == nil {
			if onLongPoll {
				connected, err = r.longPoll(ctx)
			} else {
				connected, err = r.webSocket(ctx)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		var herr *handlerError
		if errors.As(err, &herr) {
			return herr.err
		}
		if connected {
			everConnected = true
			backoff = r.cfg.Backoff.Min
		}
		if errors.Is(err, errRestoreWebSocket) {
			onLongPoll = false
			continue
		}
		if !connected && !onLongPoll && r.cfg.Transport == Auto && handshakeRefused(err) {
			// A proxy that does not pass upgrades: long polling may still
			// get through, and is tried at once.
			r.cfg.Logger.Debug("pullclient: WebSocket refused, falling back to long polling", "err", err)
			onLongPoll, longPollSince = true, time.Now()
			continue
		}
		if errors.Is(err, ErrRefused) && r.cfg.Reload != nil {
			r.reload = true
		} else if permanent(err) || (!everConnected && !r.cfg.KeepTrying) {
			return err
		}
		wait := jittered(backoff, r.cfg.Backoff.Jitter)
		restarting := r.restarting
		switch {
		case r.reconnect:
			r.reconnect = false
			wait = 0
		case restarting:
			r.restarting = false
			wait = r.cfg.ServerRestartDelay
		default:
			backoff = min(2*backoff, r.cfg.Backoff.Max)
		}
		if onLongPoll && r.cfg.Transport == Auto && time.Since(longPollSince) >= r.cfg.RestoreWebSocket {
			onLongPoll = false
		}
		if err := r.emit(Disconnected{Err: err, Retry: wait, Restarting: restarting}); err != nil {
			return errors.Unwrap(err)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

// reloadConfig replaces the config with Config.Reload's, keeping the last
// message id and the client's own settings.
func (r *runner) reloadConfig(ctx context.Context) error {
	next, err := r.cfg.Reload(ctx)
	if err != nil {
		return err
	}
	cur := r.cfg
	next.MID, next.Transport, next.HTTPClient, next.Backoff = "", cur.Transport, cur.HTTPClient, cur.Backoff
	next.ServerRestartDelay, next.RestoreWebSocket, next.KeepTrying = cur.ServerRestartDelay, cur.RestoreWebSocket, cur.KeepTrying
	next.Reload, next.Logger = cur.Reload, cur.Logger
	if next, err = next.normalized(); err != nil {
		return err
	}
	r.cfg, r.decode, r.reload = next, decoderFor(next.Version, next.Format), false
	return nil
}

// handshakeRefused reports a WebSocket handshake answered without an
// upgrade (but not a refusal of the channels themselves).
func handshakeRefused(err error) bool {
	var se *StatusError
	return errors.As(err, &se)
}

// jittered stretches d by a random part of up to jitter.
func jittered(d time.Duration, jitter float64) time.Duration {
	if jitter <= 0 {
		return d
	}
	return d + time.Duration(rand.Float64()*jitter*float64(d))
}

// emit hands e to the caller.
func (r *runner) emit(e Event) error {
	if err := r.handle(e); err != nil {
		return &handlerError{err}
	}
	return nil
}

// deliver hands over the messages of one delivery, skipping ids already
// delivered, and acts on the system commands. It returns errSwitch when
// the connection must be made again with a new channel or config.
func (r *runner) deliver(data []byte) error {
	msgs, derr := r.decode(data)
	var after error
	for _, m := range msgs {
		if m.MID != "" {
			if slices.Contains(r.recent, m.MID) {
				continue
			}
			if len(r.recent) == recentIDs {
				r.recent = append(r.recent[:0], r.recent[1:]...)
			}
			r.recent = append(r.recent, m.MID)
			r.setMID(m.MID)
		}
		e := typed(m)
		if err := r.emit(e); err != nil {
			return err
		}
		switch e := e.(type) {
		case ServerRestart:
			r.restarting = true
		case ConfigExpire:
			if r.cfg.Reload != nil {
				r.reload, r.reconnect, after = true, true, errSwitch
			}
		case ChannelExpire:
			if e.Action == "reconnect" && e.NewChannel != nil && e.NewChannel.ID != "" {
				if i := slices.Index(r.cfg.Channels, e.Channel.ID); i >= 0 {
					r.cfg.Channels[i] = e.NewChannel.ID
					r.reconnect, after = true, errSwitch
				}
			} else if r.cfg.Reload != nil {
				r.reload, r.reconnect, after = true, true, errSwitch
			}
		}
	}
	if derr != nil {
		if err := r.emit(Skipped{Err: derr}); err != nil {
			return err
		}
	}
	return after
}

// requestURL is the URL of the next connection on base.
func (r *runner) requestURL(base string) string {
	return SubscribeURL(base, r.cfg.Version, r.cfg.Format, r.cfg.Channels, r.cfg.JWT, r.lastMID())
}
