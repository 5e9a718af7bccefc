// Package memory is the embedded broker: ids, history and presence in this
// process, with the history snapshotted to the data directory on a graceful
// shutdown and restored at start, so a planned restart loses nothing.
package memory

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// Options configure a Broker.
type Options struct {
	// DataDir keeps the id state and the history snapshot. Empty keeps
	// nothing on disk (tests, benchmarks).
	DataDir string
	// HistoryPerChannel caps the messages stored per channel; older ones go.
	HistoryPerChannel int
	// MaxStored caps the stored entries (one per message and channel) of
	// all channels together, so that many busy channels cannot exhaust
	// memory; beyond it the oldest entries go first. 0: no cap.
	MaxStored int
	// LiveRetention keeps messages published with expiry 0 ("live only",
	// protocol version 4) replayable for this long. Long-polling clients
	// between two polls, and clients reconnecting at once, would otherwise
	// lose them; on the wire their expiry stays 0. 0 keeps nothing.
	LiveRetention time.Duration
	// SweepInterval is how often expired messages are dropped; 0 means a minute.
	SweepInterval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Broker is the embedded engine. Publishing is serialised so that every
// subscriber sees each channel's messages in id order, which is what makes
// "recover everything after mid" exact.
type Broker struct {
	opt     Options
	now     func() time.Time
	log     *slog.Logger
	deliver broker.Deliverer
	gen     *message.Generator

	publishMu sync.Mutex // orders id assignment, storage and hand-off to the dispatcher

	// dispatch carries stored messages, in id order, to one goroutine that
	// fans them out, so a publish is answered once stored rather than after
	// every subscriber's queue has taken it. It is bounded: a publisher
	// waits when fan-out falls that far behind.
	dispatch   chan dispatchItem
	dispatched chan struct{} // closed when the dispatcher has finished

	histMu  sync.RWMutex
	history map[channel.ID]*channelLog
	// stored counts the entries in history; order lists them oldest first
	// for the global cap. order may hold entries already gone from their
	// channel (trimmed or expired); they are skipped when met and dropped
	// by Sweep.
	stored    int
	order     []storedEntry
	orderHead int

	presenceMu sync.Mutex
	presence   map[channel.ID]int

	// seen is the users' last-seen times, Unix seconds by channel.User id;
	// one entry per user ever seen, kept in the snapshot.
	seenMu sync.Mutex
	seen   map[channel.ID]int64

	stop     chan struct{}
	sweeping sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
}

// channelLog is one channel's stored messages, ascending by id.
type channelLog struct {
	msgs []*message.Message
}

// New opens the broker, restoring the id state and history from opt.DataDir.
func New(opt Options, d broker.Deliverer) (*Broker, error) {
	if opt.HistoryPerChannel <= 0 {
		return nil, fmt.Errorf("memory broker: history per channel must be positive, got %d", opt.HistoryPerChannel)
	}
	if opt.SweepInterval <= 0 {
		opt.SweepInterval = time.Minute
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	b := &Broker{
		opt:      opt,
		now:      opt.Now,
		log:      opt.Log,
		deliver:  d,
		history:  make(map[channel.ID]*channelLog),
		presence: make(map[channel.ID]int),
		seen:     make(map[channel.ID]int64),
		stop:     make(chan struct{}),
		dispatch: make(chan dispatchItem, dispatchQueue),

		dispatched: make(chan struct{}),
	}
	if err := b.restore(); err != nil {
		return nil, err
	}
	b.sweeping.Add(1)
	go b.sweepLoop()
	if d != nil {
		go b.dispatchLoop()
	} else {
		close(b.dispatched)
	}
	return b, nil
}

// Publish implements broker.Broker.
func (b *Broker) Publish(ctx context.Context, m *message.Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	b.publishMu.Lock()
	defer b.publishMu.Unlock()
	if b.isClosed() {
		return broker.ErrClosed
	}
	m.ID = b.gen.Next()
	m.Created = b.now()
	if m.Expiry > 0 || b.opt.LiveRetention > 0 {
		b.store(m)
	}
	if b.deliver != nil {
		select {
		case b.dispatch <- dispatchItem{m: m}:
		case <-ctx.Done():
			// Stored but not yet delivered: it is in the history, and
			// subscribers recover it by mid.
			return fmt.Errorf("publish: fan-out queue full: %w", ctx.Err())
		}
	}
	return nil
}

// dispatchItem is a message to fan out, or a barrier for Sync.
type dispatchItem struct {
	m       *message.Message
	barrier chan struct{}
}

// dispatchQueue bounds the messages stored but not yet fanned out.
const dispatchQueue = 4096

func (b *Broker) dispatchLoop() {
	defer close(b.dispatched)
	for it := range b.dispatch {
		if it.barrier != nil {
			close(it.barrier)
			continue
		}
		b.deliver.Deliver(it.m)
	}
}

// Sync returns once every message published before it has been handed to
// the Deliverer. Tests and benchmarks use it to wait for fan-out.
func (b *Broker) Sync(ctx context.Context) error {
	if b.deliver == nil {
		return nil
	}
	done := make(chan struct{})
	b.publishMu.Lock()
	if b.isClosed() {
		b.publishMu.Unlock()
		return broker.ErrClosed
	}
	select {
	case b.dispatch <- dispatchItem{barrier: done}:
	case <-ctx.Done():
		b.publishMu.Unlock()
		return ctx.Err()
	}
	b.publishMu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Broker) store(m *message.Message) {
	b.histMu.Lock()
	defer b.histMu.Unlock()
	for _, r := range m.Receivers {
		l := b.history[r.ID]
		if l == nil {
			l = &channelLog{}
			b.history[r.ID] = l
		}
		if len(l.msgs) >= b.opt.HistoryPerChannel {
			// Shift rather than re-slice so the backing array does not grow
			// without bound on a busy channel.
			drop := len(l.msgs) - b.opt.HistoryPerChannel + 1
			n := copy(l.msgs, l.msgs[drop:])
			clear(l.msgs[n:])
			l.msgs = l.msgs[:n]
			b.stored -= drop
		}
		l.msgs = append(l.msgs, m)
		b.stored++
		if b.opt.MaxStored > 0 {
			b.order = append(b.order, storedEntry{ch: r.ID, id: m.ID})
		}
	}
	b.enforceMaxStored()
}

// storedEntry names one stored entry for the global cap.
type storedEntry struct {
	ch channel.ID
	id message.ID
}

// enforceMaxStored drops the oldest entries of all channels while there are
// more than MaxStored. Called with histMu held.
func (b *Broker) enforceMaxStored() {
	for b.opt.MaxStored > 0 && b.stored > b.opt.MaxStored && b.orderHead < len(b.order) {
		e := b.order[b.orderHead]
		b.orderHead++
		l := b.history[e.ch]
		if l == nil || len(l.msgs) == 0 || l.msgs[0].ID != e.id {
			continue // already trimmed or expired
		}
		l.msgs[0] = nil
		l.msgs = l.msgs[1:]
		b.stored--
		if len(l.msgs) == 0 {
			delete(b.history, e.ch)
		}
	}
	// Reuse the front of order once half of it is spent.
	if b.orderHead > 1024 && b.orderHead > len(b.order)/2 {
		n := copy(b.order, b.order[b.orderHead:])
		b.order = b.order[:n]
		b.orderHead = 0
	}
}

// NewID implements broker.Broker.
func (b *Broker) NewID(context.Context) (message.ID, error) {
	if b.isClosed() {
		return message.ID{}, broker.ErrClosed
	}
	return b.gen.Next(), nil
}

// History implements broker.Broker.
func (b *Broker) History(ctx context.Context, channels []channel.ID, after message.ID, limit broker.HistoryLimit) ([]broker.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	now := b.now()
	var out []broker.Entry
	b.histMu.RLock()
	for _, ch := range channels {
		l := b.history[ch]
		if l == nil {
			continue
		}
		start, _ := slices.BinarySearchFunc(l.msgs, after, func(m *message.Message, id message.ID) int {
			// Find the first id strictly greater than after.
			if m.ID.Compare(id) <= 0 {
				return -1
			}
			return 1
		})
		msgs := l.msgs[start:]
		var kept []broker.Entry
		for _, m := range msgs {
			if b.expiresAt(m).After(now) {
				kept = append(kept, broker.Entry{Msg: m, Channel: ch})
			}
		}
		if limit.PerChannel > 0 && len(kept) > limit.PerChannel {
			kept = kept[len(kept)-limit.PerChannel:]
		}
		out = append(out, kept...)
	}
	b.histMu.RUnlock()
	slices.SortStableFunc(out, func(a, c broker.Entry) int { return a.Msg.ID.Compare(c.Msg.ID) })
	if limit.Total > 0 && len(out) > limit.Total {
		out = out[len(out)-limit.Total:]
	}
	return out, nil
}

// LastID implements broker.Broker.
func (b *Broker) LastID(_ context.Context, channels []channel.ID) (message.ID, bool, error) {
	now := b.now()
	var last message.ID
	found := false
	b.histMu.RLock()
	defer b.histMu.RUnlock()
	for _, ch := range channels {
		l := b.history[ch]
		if l == nil {
			continue
		}
		for i := len(l.msgs) - 1; i >= 0; i-- {
			m := l.msgs[i]
			if !b.expiresAt(m).After(now) {
				continue
			}
			if !found || last.Less(m.ID) {
				last, found = m.ID, true
			}
			break
		}
	}
	return last, found, nil
}

// Attach implements broker.Broker.
func (b *Broker) Attach(_ context.Context, channels []channel.ID) error {
	b.presenceMu.Lock()
	defer b.presenceMu.Unlock()
	for _, ch := range channels {
		b.presence[ch]++
	}
	return nil
}

// Detach implements broker.Broker.
func (b *Broker) Detach(_ context.Context, channels []channel.ID) error {
	b.presenceMu.Lock()
	defer b.presenceMu.Unlock()
	for _, ch := range channels {
		switch n := b.presence[ch]; {
		case n > 1:
			b.presence[ch] = n - 1
		case n == 1:
			delete(b.presence, ch)
		default:
			return fmt.Errorf("detach: channel %s has no connections", ch)
		}
	}
	return nil
}

// Online implements broker.Broker.
func (b *Broker) Online(_ context.Context, channels []channel.ID) ([]int, error) {
	out := make([]int, len(channels))
	b.presenceMu.Lock()
	defer b.presenceMu.Unlock()
	for i, ch := range channels {
		out[i] = b.presence[ch]
	}
	return out, nil
}

// Stats describes the stored history.
type Stats struct {
	Channels int // channels with stored messages
	Messages int // stored entries, one per (message, channel)
}

// Stats returns the current history size.
func (b *Broker) Stats() Stats {
	b.histMu.RLock()
	defer b.histMu.RUnlock()
	s := Stats{Channels: len(b.history)}
	for _, l := range b.history {
		s.Messages += len(l.msgs)
	}
	return s
}

// Close stops the sweeper and, with a data directory, writes the snapshot and
// the id state so the next start continues where this one stopped.
func (b *Broker) Close(ctx context.Context) error {
	b.closeMu.Lock()
	if b.closed {
		b.closeMu.Unlock()
		return nil
	}
	b.closed = true
	b.closeMu.Unlock()
	close(b.stop)
	b.sweeping.Wait()
	// Wait for a publish in progress so the snapshot and the saved counter
	// include it.
	b.publishMu.Lock()
	defer b.publishMu.Unlock()
	// Let fan-out finish what was published; no publish can start now.
	if b.deliver != nil {
		close(b.dispatch)
		select {
		case <-b.dispatched:
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("close memory broker: %w", err)
	}
	return b.persist()
}

// expiresAt is when a stored message stops being replayable.
func (b *Broker) expiresAt(m *message.Message) time.Time {
	if m.Expiry == 0 {
		return m.Created.Add(b.opt.LiveRetention)
	}
	return m.ExpiresAt()
}

func (b *Broker) isClosed() bool {
	b.closeMu.Lock()
	defer b.closeMu.Unlock()
	return b.closed
}

func (b *Broker) sweepLoop() {
	defer b.sweeping.Done()
	t := time.NewTicker(b.opt.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.Sweep()
		}
	}
}

// Sweep drops expired messages and empty channels. It runs periodically; it is
// exported for tests that drive the clock.
func (b *Broker) Sweep() {
	now := b.now()
	b.histMu.Lock()
	defer b.histMu.Unlock()
	b.stored = 0
	for ch, l := range b.history {
		l.msgs = slices.DeleteFunc(l.msgs, func(m *message.Message) bool { return !b.expiresAt(m).After(now) })
		if len(l.msgs) == 0 {
			delete(b.history, ch)
		}
		b.stored += len(l.msgs)
	}
	b.compactOrder()
}

// compactOrder drops the entries of order that are no longer stored.
// Called with histMu held.
func (b *Broker) compactOrder() {
	if b.opt.MaxStored <= 0 {
		return
	}
	live := b.order[:0]
	for _, e := range b.order[b.orderHead:] {
		l := b.history[e.ch]
		if l == nil {
			continue
		}
		if _, found := slices.BinarySearchFunc(l.msgs, e.id, func(m *message.Message, id message.ID) int { return m.ID.Compare(id) }); found {
			live = append(live, e)
		}
	}
	clear(b.order[len(live):])
	b.order, b.orderHead = live, 0
}

// entriesByID orders snapshot entries; used when restoring.
func entriesByID(a, c *message.Message) int { return cmp.Compare(a.ID.Compare(c.ID), 0) }
