package realtime

import (
	"runtime"
	"sync"
	"time"

	"github.com/gobwas/ws"

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
	// merge holds writes back to merge them (Options.WriteMergeDelay); nil
	// when there is no delay.
	merge *merger
}

// writerQueue is how many connections may wait for a worker; beyond it a
// burst gets a goroutine of its own, as before the pool.
const writerQueue = 16384

// newWriterPool starts the workers, and with a mergeDelay the merger,
// which calls held on each write it holds back.
func newWriterPool(mergeDelay time.Duration, held func()) *writerPool {
	p := &writerPool{ready: make(chan burstSource, writerQueue)}
	p.scratch.New = func() any { return new(burstWriter) }
	if mergeDelay > 0 {
		p.merge = newMerger(mergeDelay, held)
	}
	n := max(runtime.GOMAXPROCS(0), 2)
	p.done.Add(n)
	for range n {
		go p.work()
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

// stop writes what is held, lets the workers finish what is queued, and
// ends them.
func (p *writerPool) stop() {
	if p.merge != nil {
		p.merge.close()
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	close(p.ready)
	p.mu.Unlock()
	p.done.Wait()
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
}

// burstSource is a connection with a burst to write (wsConn, wswriter.go):
// writeLoop writes what is queued, with w as scratch space.
type burstSource interface {
	writeLoop(w *burstWriter)
}
