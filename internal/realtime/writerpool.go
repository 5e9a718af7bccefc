package realtime

import (
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/netpoll"
)

// writerPool writes WebSocket bursts on a few long-lived goroutines instead
// of starting one per burst. Under fan-out a new goroutine per connection
// per publish was a fifth of the server's CPU outside the system calls:
// creating it, and growing its stack to fit the write path (a fresh
// goroutine's 2 KiB never does). A worker's stack has grown once for all.
//
// Workers never block on a socket: they write what the kernel takes at
// once (a non-blocking writev), and a connection whose socket is full is
// handed to a goroutine of its own that finishes the burst with a blocking,
// deadline-bound write, so one slow reader cannot hold up the others.
type writerPool struct {
	ready chan burstSource
	// mu orders submit against stop: after stop no session is queued
	// without a worker left to take it.
	mu      sync.RWMutex
	stopped bool
	done    sync.WaitGroup
	// scratch holds burstWriters for the goroutines of connections' own.
	scratch sync.Pool
	// rings counts the workers that write with io_uring; ringWrites and
	// ringCalls, what they wrote, for the log line at stop.
	rings      int
	ringWrites atomic.Int64
	ringCalls  atomic.Int64
	log        *slog.Logger
}

// writerQueue is how many connections may wait for a worker; beyond it a
// burst gets a goroutine of its own, as before the pool.
const writerQueue = 16384

// newWriterPool starts the workers. With newRing, each writes the bursts
// of many connections with one io_uring_enter (ringwriter.go) where the
// kernel allows io_uring, and with writev otherwise.
func newWriterPool(newRing func(entries uint32) (*netpoll.Ring, error), log *slog.Logger) *writerPool {
	p := &writerPool{ready: make(chan burstSource, writerQueue), log: log}
	p.scratch.New = func() any { return new(burstWriter) }
	n := max(runtime.GOMAXPROCS(0), 2)
	p.done.Add(n)
	for range n {
		var r *netpoll.Ring
		if newRing != nil {
			var err error
			if r, err = newRing(ringBatch); err != nil {
				log.Warn("io_uring refused: WebSockets are written with writev", "err", err)
				newRing = nil
			}
		}
		if r != nil {
			p.rings++
			go p.workRing(r, log)
		} else {
			go p.work()
		}
	}
	return p
}

func (p *writerPool) work() {
	defer p.done.Done()
	w := burstWriter{pooled: true}
	for c := range p.ready {
		c.writeLoop(&w)
	}
}

// submit queues c's writer; false if the pool cannot take it now.
func (p *writerPool) submit(c burstSource) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.stopped {
		return false
	}
	select {
	case p.ready <- c:
		return true
	default:
		return false
	}
}

// stop lets the workers finish what is queued and end.
func (p *writerPool) stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	close(p.ready)
	p.mu.Unlock()
	p.done.Wait()
	if p.rings > 0 {
		// How many sockets one system call wrote to on average: what
		// io_uring saved over one writev each.
		p.log.Info("io_uring writers stopped", "writes", p.ringWrites.Load(), "io_uring_enter_calls", p.ringCalls.Load())
	}
}

// own returns scratch space for a writer on a goroutine of its own; give
// it back with release.
func (p *writerPool) own() *burstWriter {
	w, _ := p.scratch.Get().(*burstWriter)
	return w
}

func (p *writerPool) release(w *burstWriter) {
	clear(w.pieces[:cap(w.pieces)]) // the frames it pointed to may be collected
	w.pieces = w.pieces[:0]
	p.scratch.Put(w)
}

// burstWriter is a writer's scratch space, reused from burst to burst.
type burstWriter struct {
	pieces   [][]byte
	hdr      [ws.MaxHeaderSize]byte
	batchHdr [16]byte
	vec      netpoll.Writev
	// pooled: a pool worker, whose writes must not block.
	pooled bool

	// A ring worker's state of one connection between its bursts: the
	// connection, the deliveries taken from its queue and not yet framed,
	// and the queue array they came in, handed back to the session for
	// reuse once all are written.
	src     burstSource
	q       []*hub.Delivery
	written []*hub.Delivery
}

// burstSource is a connection with a burst to write (wsConn, wswriter.go):
// writeLoop writes what is queued, with w as scratch space. A ring worker
// uses the other methods instead, which are writeLoop cut at its write so
// that many connections' writes go to the kernel at once.
type burstSource interface {
	writeLoop(w *burstWriter)
	// nextBurst frames the next message into w.pieces; false when the
	// queue is empty and the writer has ended.
	nextBurst(w *burstWriter) bool
	// lockSocket takes the write lock and returns the socket; unlock
	// releases it. An error: the connection is closed (lock not held).
	lockSocket() (syscall.RawConn, error)
	unlock()
	// burstWritten takes what the write did: n bytes or err; true if the
	// connection stays with the worker for its next burst.
	burstWritten(w *burstWriter, n int, err error) bool
}

// errRingFailed ends the writers of a ring batch that failed as a whole.
var errRingFailed = errors.New("io_uring failed")
