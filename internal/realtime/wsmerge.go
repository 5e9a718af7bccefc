package realtime

import (
	"sync"
	"sync/atomic"
	"time"
)

// merger holds WebSocket writes back for a short, operator-set delay
// (Options.WriteMergeDelay) so that what a connection is sent within it
// leaves in one system call. On loopback and on a saturated machine a
// socket write costs about the same for one message as for several, so
// fewer, larger writes are the cheapest way to spend less per delivery.
//
// A connection is written at most once per delay: the first message after
// a quiet spell goes out at once, and what arrives within the delay after
// its last write waits for the delay to run out and leaves with everything
// queued by then. Held connections wait in one FIFO that a single goroutine
// drains on a single timer; no connection has a timer or goroutine of its
// own. Because the delay is the same for every connection, the FIFO is
// nearly in due order, and an entry never waits past its own arrival plus
// the delay even behind a later-due one.
type merger struct {
	delay time.Duration
	// now is a monotonic clock, never 0 (0 is "never written"); tests
	// replace it.
	now func() time.Duration

	mu      sync.Mutex
	held    []heldConn // in the order they were held
	gen     uint64     // the last hold's generation
	stopped bool

	kick chan struct{} // the FIFO was empty and is not
	stop chan struct{}
	done chan struct{}
	// counted, when set, is told of each hold (the metrics).
	counted func()
}

// holdable is a connection the merger holds back (wsConn): the
// generation of its current hold, 0 when not held, and its writer, started
// once the hold ends. An interface, so that the writer pool, which owns the
// merger, depends on no transport.
type holdable interface {
	holdGen() *atomic.Uint64
	start()
}

// heldConn is one connection waiting for its delay to run out.
type heldConn struct {
	c   holdable
	gen uint64        // the hold it is: a stale entry is skipped
	due time.Duration // merger.now at which it is written
}

func newMerger(delay time.Duration, counted func()) *merger {
	start := time.Now()
	m := &merger{
		delay:   delay,
		now:     func() time.Duration { return time.Since(start) + 1 },
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		counted: counted,
	}
	go m.run()
	return m
}

// hold puts c in the held set if its last write (merger.now, 0 for never)
// is less than the delay ago; false means write now. The caller holds c's
// session lock and keeps the session's writer marked busy while c is held.
func (m *merger) hold(c holdable, last time.Duration) bool {
	if last == 0 {
		return false
	}
	due := last + m.delay
	if m.now() >= due {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return false
	}
	m.gen++
	c.holdGen().Store(m.gen)
	m.held = append(m.held, heldConn{c: c, gen: m.gen, due: due})
	if len(m.held) == 1 {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	if m.counted != nil {
		m.counted()
	}
	return true
}

// run writes held connections as their delays run out, until close.
func (m *merger) run() {
	defer close(m.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var due []heldConn
	for {
		m.mu.Lock()
		if len(m.held) == 0 {
			m.mu.Unlock()
			select {
			case <-m.kick:
				continue
			case <-m.stop:
				return
			}
		}
		wait := m.held[0].due - m.now()
		if wait <= 0 {
			due = m.takeDueLocked(due[:0])
		}
		m.mu.Unlock()
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-m.stop:
				timer.Stop()
				return
			}
			continue
		}
		release(due)
		clear(due) // the connections may be collected
	}
}

// takeDueLocked moves the held entries from the front of the FIFO whose
// time has come to into.
func (m *merger) takeDueLocked(into []heldConn) []heldConn {
	now := m.now()
	n := 0
	for n < len(m.held) && m.held[n].due <= now {
		n++
	}
	into = append(into, m.held[:n]...)
	clear(m.held[:n])
	m.held = m.held[n:]
	if len(m.held) == 0 {
		m.held = m.held[:0:0] // let a large burst's array go
	}
	return into
}

// flush writes every held connection now, whatever its delay. Tests use it
// in place of waiting for the timer.
func (m *merger) flush() {
	m.mu.Lock()
	all := append([]heldConn(nil), m.held...)
	m.held = nil
	m.mu.Unlock()
	release(all)
}

// close stops holding and writes every connection still held, before the
// writer pool stops taking them.
func (m *merger) close() {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	m.stopped = true
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	m.flush()
}

// release starts the writers of held connections that are still held as
// these entries left them.
func release(hs []heldConn) {
	for _, h := range hs {
		if h.c.holdGen().CompareAndSwap(h.gen, 0) {
			h.c.start()
		}
	}
}
