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
	"unsafe"

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
	// MaxBytes caps the memory the stored messages take, by their size
	// estimate (messageSize); beyond it the oldest entries of all channels
	// go first. 0: no cap.
	MaxBytes int64
	// ChannelMaxBytes caps the size of one channel's stored messages; beyond
	// it the channel's oldest go. 0: no cap.
	ChannelMaxBytes int64
	// LiveRetention keeps messages published with expiry 0 ("live only",
	// protocol version 4) replayable for this long. Long-polling clients
	// between two polls, and clients reconnecting at once, would otherwise
	// lose them; on the wire their expiry stays 0. 0 keeps nothing.
	LiveRetention time.Duration
	// MaxPayload refuses messages whose payload (broker.PayloadSize) is
	// larger, with broker.ErrTooLarge. 0: no limit.
	MaxPayload int64
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
	// stored counts the entries in history and storedBytes their share of
	// the messages' sizes; order lists them oldest first for the global
	// caps. order may hold entries already gone from their channel
	// (trimmed or expired); they are skipped when met and dropped by Sweep.
	stored      int
	storedBytes int64
	order       []storedEntry
	orderHead   int

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
	msgs  []*message.Message
	bytes int64 // the sizes of msgs
	// lost is the newest message dropped to bound history before it
	// expired, kept until lostUntil (when it would have expired): a client
	// recovering from an older mid missed it.
	lost      message.ID
	lostUntil time.Time
}

// entryOverhead estimates what one stored message costs besides its bodies:
// the Message struct, its receivers slice and the history slots.
const entryOverhead = 256

// messageSize estimates the memory m takes while stored.
func messageSize(m *message.Message) int64 {
	n := entryOverhead + len(m.Body) + len(m.Dictionary) + len(m.Receivers)*int(unsafe.Sizeof(message.Receiver{}))
	for _, p := range m.UserParams {
		n += len(p) + 64
	}
	return int64(n)
}

// entryBytes is one channel's share of m's size: the global byte cap counts
// a message to many channels once, however many entries it has.
func entryBytes(m *message.Message) int64 {
	return messageSize(m) / int64(max(len(m.Receivers), 1))
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
	if err := broker.CheckPayload(m, b.opt.MaxPayload); err != nil {
		return err
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
	size, share := messageSize(m), entryBytes(m)
	for _, r := range m.Receivers {
		l := b.history[r.ID]
		if l == nil {
			l = &channelLog{}
			b.history[r.ID] = l
		}
		drop := max(len(l.msgs)-b.opt.HistoryPerChannel+1, 0)
		if b.opt.ChannelMaxBytes > 0 {
			for over := l.bytes + size - b.opt.ChannelMaxBytes; drop < len(l.msgs) && over > 0; drop++ {
				over -= messageSize(l.msgs[drop])
			}
		}
		if drop > 0 {
			b.dropOldest(l, drop)
		}
		l.msgs = append(l.msgs, m)
		l.bytes += size
		b.stored++
		b.storedBytes += share
		if b.globalCaps() {
			b.order = append(b.order, storedEntry{ch: r.ID, id: m.ID})
		}
	}
	b.enforceMaxStored()
}

// globalCaps reports whether history is bounded across channels, which
// needs the entries' global order.
func (b *Broker) globalCaps() bool { return b.opt.MaxStored > 0 || b.opt.MaxBytes > 0 }

// dropOldest drops l's n oldest messages to bound history, remembering the
// newest of them as lost. Called with histMu held.
func (b *Broker) dropOldest(l *channelLog, n int) {
	for _, m := range l.msgs[:n] {
		l.bytes -= messageSize(m)
		b.storedBytes -= entryBytes(m)
		b.markLost(l, m)
	}
	b.stored -= n
	// Shift rather than re-slice so the backing array does not grow
	// without bound on a busy channel.
	k := copy(l.msgs, l.msgs[n:])
	clear(l.msgs[k:])
	l.msgs = l.msgs[:k]
}

// storedEntry names one stored entry for the global cap.
type storedEntry struct {
	ch channel.ID
	id message.ID
}

// markLost records that l dropped m before it expired.
func (b *Broker) markLost(l *channelLog, m *message.Message) {
	until := b.expiresAt(m)
	if !until.After(b.now()) || !l.lost.Less(m.ID) {
		return
	}
	l.lost = m.ID
	if until.After(l.lostUntil) {
		l.lostUntil = until
	}
}

// overGlobalCaps reports whether history holds more than the global caps
// allow. Called with histMu held.
func (b *Broker) overGlobalCaps() bool {
	return (b.opt.MaxStored > 0 && b.stored > b.opt.MaxStored) ||
		(b.opt.MaxBytes > 0 && b.storedBytes > b.opt.MaxBytes)
}

// enforceMaxStored drops the oldest entries of all channels while history
// is over MaxStored or MaxBytes. Called with histMu held.
func (b *Broker) enforceMaxStored() {
	for b.overGlobalCaps() && b.orderHead < len(b.order) {
		e := b.order[b.orderHead]
		b.orderHead++
		l := b.history[e.ch]
		if l == nil || len(l.msgs) == 0 || l.msgs[0].ID != e.id {
			continue // already trimmed or expired
		}
		// Re-slice rather than shift: the global cap takes one entry at a
		// time, and append reuses the array once it is spent.
		m := l.msgs[0]
		l.bytes -= messageSize(m)
		b.storedBytes -= entryBytes(m)
		b.markLost(l, m)
		l.msgs[0] = nil
		l.msgs = l.msgs[1:]
		b.stored--
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
	p, err := b.Recover(ctx, channels, after, limit)
	return p.Entries, err
}

// Recover implements broker.Broker.
func (b *Broker) Recover(ctx context.Context, channels []channel.ID, after message.ID, limit broker.HistoryLimit) (broker.Page, error) {
	if err := ctx.Err(); err != nil {
		return broker.Page{}, fmt.Errorf("history: %w", err)
	}
	now := b.now()
	reads := make([][]broker.Entry, 0, len(channels))
	var lost message.ID
	var lostIn channel.ID
	b.histMu.RLock()
	for _, ch := range channels {
		l := b.history[ch]
		if l == nil {
			continue
		}
		if after.Less(l.lost) && l.lostUntil.After(now) && lost.Less(l.lost) {
			lost, lostIn = l.lost, ch
		}
		start, _ := slices.BinarySearchFunc(l.msgs, after, func(m *message.Message, id message.ID) int {
			// Find the first id strictly greater than after.
			if m.ID.Compare(id) <= 0 {
				return -1
			}
			return 1
		})
		var kept []broker.Entry
		for _, m := range l.msgs[start:] {
			if limit.PerChannel > 0 && len(kept) > limit.PerChannel {
				break // one more than the limit tells Paginate there are more
			}
			if b.expiresAt(m).After(now) {
				kept = append(kept, broker.Entry{Msg: m, Channel: ch})
			}
		}
		reads = append(reads, kept)
	}
	b.histMu.RUnlock()
	p := broker.Paginate(reads, limit)
	p.Lost, p.LostChannel = lost, lostIn
	return p, nil
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
	Channels int   // channels with stored messages
	Messages int   // stored entries, one per (message, channel)
	Bytes    int64 // the stored messages' size estimate, each counted once
}

// Stats returns the current history size.
func (b *Broker) Stats() Stats {
	b.histMu.RLock()
	defer b.histMu.RUnlock()
	s := Stats{Bytes: b.storedBytes}
	for _, l := range b.history {
		if len(l.msgs) > 0 {
			s.Channels++
		}
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
	b.stored, b.storedBytes = 0, 0
	for ch, l := range b.history {
		l.msgs = slices.DeleteFunc(l.msgs, func(m *message.Message) bool { return !b.expiresAt(m).After(now) })
		if !l.lostUntil.After(now) {
			l.lost, l.lostUntil = message.ID{}, time.Time{}
		}
		if len(l.msgs) == 0 && l.lost.IsZero() {
			delete(b.history, ch)
			continue
		}
		l.bytes = 0
		for _, m := range l.msgs {
			l.bytes += messageSize(m)
			b.storedBytes += entryBytes(m)
		}
		b.stored += len(l.msgs)
	}
	b.compactOrder()
}

// compactOrder drops the entries of order that are no longer stored.
// Called with histMu held.
func (b *Broker) compactOrder() {
	if !b.globalCaps() {
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
