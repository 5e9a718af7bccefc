package redis

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// errDown is returned to Attach while the node has no Pub/Sub connection: it
// could not promise the new connection its messages.
var errDown = errors.New("redis: subscription connection is down")

// subscribeBatch bounds the channels named in one SUBSCRIBE.
const subscribeBatch = 1000

// subscriber keeps this node's Pub/Sub connection subscribed to exactly the
// channels it has local connections on, and hands what arrives to the
// Deliverer once, in id order.
//
// Changes are batched: Attach records its channels and waits while one
// goroutine sends a single SUBSCRIBE for everything new since its last round.
type subscriber struct {
	b *Broker

	mu         sync.Mutex
	refs       map[string]int  // channel hex -> local connections
	subscribed map[string]bool // confirmed on the current connection
	waiters    []chan error    // Attach calls waiting for the next round
	kick       chan struct{}
	up         atomic.Bool
	ready      chan struct{} // closed the first time the connection is up
	readyOnce  sync.Once

	// deliverMu orders deliveries: the Pub/Sub reader and the catch-up
	// after a reconnect both go through deliverLocked.
	deliverMu  sync.Mutex
	last       message.ID // newest id handed to the Deliverer
	catchingUp bool
	held       []*message.Message // arrived during a catch-up

	// everUp is set once a connection was up: later connections catch up.
	// Only the run goroutine touches it.
	everUp bool
}

func newSubscriber(b *Broker) *subscriber {
	return &subscriber{
		b:          b,
		refs:       make(map[string]int),
		subscribed: make(map[string]bool),
		kick:       make(chan struct{}, 1),
		ready:      make(chan struct{}),
	}
}

// add counts channels and returns once each is subscribed.
func (s *subscriber) add(ctx context.Context, channels []channel.ID) error {
	s.mu.Lock()
	wait := false
	for _, ch := range channels {
		k := hex.EncodeToString(ch[:])
		s.refs[k]++
		if !s.subscribed[k] {
			wait = true
		}
	}
	if !wait {
		s.mu.Unlock()
		return nil
	}
	if !s.up.Load() {
		s.mu.Unlock()
		s.remove(channels)
		return errDown
	}
	done := make(chan error, 1)
	s.waiters = append(s.waiters, done)
	s.mu.Unlock()
	s.poke()
	select {
	case err := <-done:
		if err != nil {
			s.remove(channels)
		}
		return err
	case <-ctx.Done():
		s.remove(channels)
		return ctx.Err()
	}
}

// remove uncounts channels; those left without connections are
// unsubscribed in the next round.
func (s *subscriber) remove(channels []channel.ID) {
	s.mu.Lock()
	for _, ch := range channels {
		k := hex.EncodeToString(ch[:])
		if s.refs[k]--; s.refs[k] <= 0 {
			delete(s.refs, k)
		}
	}
	s.mu.Unlock()
	s.poke()
}

func (s *subscriber) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// counts returns a copy of the local connection counts.
func (s *subscriber) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.refs))
	for k, n := range s.refs {
		out[k] = n
	}
	return out
}

// local returns the channels with local connections.
func (s *subscriber) local() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.refs))
	for k := range s.refs {
		out = append(out, k)
	}
	return out
}

// run keeps a Pub/Sub connection up until stop: it connects, subscribes
// every local channel, recovers what was published while it was away, and
// then follows changes; when the connection breaks it starts over with
// backoff.
func (s *subscriber) run(stop <-chan struct{}) {
	backoff := s.b.opt.ReconnectMin
	for {
		lost, err := s.session(stop)
		s.up.Store(false)
		s.failWaiters(errDown)
		select {
		case <-stop:
			return
		default:
		}
		if lost {
			s.b.reconnects.Add(1)
			s.b.log.Warn("redis subscription connection lost; reconnecting", "err", err)
			backoff = s.b.opt.ReconnectMin
		} else {
			s.b.log.Debug("redis unreachable", "err", err, "retry_in", backoff)
		}
		select {
		case <-stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.b.opt.ReconnectMax)
	}
}

// session runs one Pub/Sub connection. lost reports that it had been up.
func (s *subscriber) session(stop <-chan struct{}) (lost bool, err error) {
	dc, release := s.b.client.Dedicate()
	defer release()
	broken := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: s.onMessage})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lostErr := make(chan error, 1)
	go func() {
		select {
		case <-stop:
		case err := <-broken:
			if err == nil {
				err = errors.New("connection closed")
			}
			lostErr <- err
		}
		cancel()
	}()

	// Until the catch-up below has run, arriving messages are held so that
	// they are delivered after the ones missed while disconnected.
	recovering := s.everUp
	s.deliverMu.Lock()
	s.catchingUp = recovering
	s.deliverMu.Unlock()
	defer s.endCatchUp()

	s.mu.Lock()
	clear(s.subscribed)
	s.mu.Unlock()
	if err := dc.Do(ctx, dc.B().Ping().Build()).Error(); err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	if !recovering {
		// The newest id before the first SUBSCRIBE is where a later
		// catch-up starts if nothing has been delivered by then: anything
		// at or below it was published before this node listened.
		id, err := s.b.currentID(ctx)
		if err != nil {
			return false, fmt.Errorf("connect: %w", err)
		}
		s.deliverMu.Lock()
		if s.last.Less(id) {
			s.last = id
		}
		s.deliverMu.Unlock()
	}
	if err := s.round(ctx, dc); err != nil {
		return false, err
	}
	s.up.Store(true)
	s.everUp = true
	s.readyOnce.Do(func() { close(s.ready) })
	if lostBefore := !s.b.heartbeatOK.Load(); lostBefore {
		// Report healthy as soon as Redis is back, not a heartbeat later.
		s.b.heartbeat()
	}
	hooks := s.b.catchUpHooks.Load()
	if recovering {
		if hooks != nil {
			s.b.catchUpHooks.CompareAndSwap(hooks, nil)
			hooks.before()
		}
		if err := s.catchUp(ctx); err != nil {
			return true, err
		}
		s.b.log.Info("redis subscription connection restored", "channels", len(s.local()))
	}
	s.endCatchUp()
	if recovering && hooks != nil {
		hooks.after()
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case err := <-lostErr:
				return true, err
			default:
				return true, ctx.Err()
			}
		case <-s.kick:
		}
		if err := s.round(ctx, dc); err != nil {
			return true, err
		}
	}
}

// round brings the subscriptions in line with the local channels, in
// batches, and then releases the Attach calls waiting for it.
func (s *subscriber) round(ctx context.Context, dc rueidis.DedicatedClient) error {
	s.mu.Lock()
	waiters := s.waiters
	s.waiters = nil
	var subs, unsubs []string
	for k := range s.refs {
		if !s.subscribed[k] {
			subs = append(subs, s.b.base+"c:"+k)
		}
	}
	for k := range s.subscribed {
		if s.refs[k] == 0 {
			unsubs = append(unsubs, s.b.base+"c:"+k)
			// Marked before the UNSUBSCRIBE is sent, so that an Attach
			// from now on waits for the next round's SUBSCRIBE.
			delete(s.subscribed, k)
		}
	}
	s.mu.Unlock()
	var err error
	for chunk := range slicesChunk(unsubs) {
		if err = dc.Do(ctx, dc.B().Unsubscribe().Channel(chunk...).Build()).Error(); err != nil {
			break
		}
	}
	if err == nil {
		for chunk := range slicesChunk(subs) {
			// Redis subscribes the whole command before it confirms the
			// first channel, and Do returns on that confirmation.
			if err = dc.Do(ctx, dc.B().Subscribe().Channel(chunk...).Build()).Error(); err != nil {
				break
			}
			s.mu.Lock()
			for _, c := range chunk {
				s.subscribed[strings.TrimPrefix(c, s.b.base+"c:")] = true
			}
			s.mu.Unlock()
		}
	}
	if err != nil {
		err = fmt.Errorf("subscribe: %w", err)
	}
	for _, w := range waiters {
		w <- err
	}
	return err
}

func slicesChunk(s []string) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		for len(s) > 0 {
			n := min(len(s), subscribeBatch)
			if !yield(s[:n]) {
				return
			}
			s = s[n:]
		}
	}
}

func (s *subscriber) failWaiters(err error) {
	s.mu.Lock()
	waiters := s.waiters
	s.waiters = nil
	s.mu.Unlock()
	for _, w := range waiters {
		w <- err
	}
}

// onMessage runs on the Pub/Sub connection's reader, one message at a time,
// in the order Redis ran the publishes, which is id order.
func (s *subscriber) onMessage(pm rueidis.PubSubMessage) {
	// The copies of a message to several of this node's channels are
	// dropped by the id at the front, before the rest is decoded.
	if len(pm.Message) >= message.IDLen {
		if id, err := message.ParseID(pm.Message[:message.IDLen]); err == nil {
			s.deliverMu.Lock()
			seen := !s.catchingUp && !s.last.Less(id)
			s.deliverMu.Unlock()
			if seen {
				return
			}
		}
	}
	m, err := decode(pm.Message)
	if err != nil {
		s.b.log.Error("dropping a published message that does not decode", "channel", pm.Channel, "err", err)
		return
	}
	s.deliverMu.Lock()
	defer s.deliverMu.Unlock()
	if s.catchingUp {
		s.held = append(s.held, m)
		return
	}
	s.deliverLocked(m)
}

// deliverLocked hands m to the Deliverer unless it was delivered already: a
// message to several channels this node listens on arrives once per channel,
// consecutively, and a catch-up may read what the reader then receives.
func (s *subscriber) deliverLocked(m *message.Message) {
	if !s.last.Less(m.ID) {
		return
	}
	s.last = m.ID
	s.b.saw(m.ID)
	s.b.received.Add(1)
	if s.b.deliver != nil {
		s.b.deliver.Deliver(m)
	}
}

// catchUp delivers what was stored for the local channels after the last
// delivered message while the node was not subscribed.
func (s *subscriber) catchUp(ctx context.Context) error {
	s.deliverMu.Lock()
	after := s.last
	s.deliverMu.Unlock()
	var chans []channel.ID
	for _, k := range s.local() {
		var id channel.ID
		if _, err := hex.Decode(id[:], []byte(k)); err == nil {
			chans = append(chans, id)
		}
	}
	// Page by page, oldest first, so that a long outage is recovered
	// whole and in order.
	recovered := 0
	for {
		page, err := s.b.Recover(ctx, chans, after, broker.HistoryLimit{PerChannel: s.b.opt.HistoryPerChannel})
		if err != nil {
			return fmt.Errorf("catch-up: %w", err)
		}
		s.deliverMu.Lock()
		for _, e := range page.Entries {
			s.deliverLocked(e.Msg)
		}
		s.deliverMu.Unlock()
		recovered += len(page.Entries)
		if !page.More {
			break
		}
		after = page.Next
	}
	if recovered > 0 {
		s.b.log.Info("recovered messages published while the subscription was down", "entries", recovered)
	}
	return nil
}

// endCatchUp delivers what arrived during the catch-up and returns to
// delivering as messages arrive.
func (s *subscriber) endCatchUp() {
	s.deliverMu.Lock()
	defer s.deliverMu.Unlock()
	for _, m := range s.held {
		s.deliverLocked(m)
	}
	s.held = nil
	s.catchingUp = false
}
