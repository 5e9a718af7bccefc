package realtime

import (
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/hub"
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
	ready chan *session
	// mu orders submit against stop: after stop no session is queued
	// without a worker left to take it.
	mu      sync.RWMutex
	stopped bool
	done    sync.WaitGroup
	// scratch holds burstWriters for the goroutines of connections' own.
	scratch sync.Pool
}

// writerQueue is how many connections may wait for a worker; beyond it a
// burst gets a goroutine of its own, as before the pool.
const writerQueue = 16384

func newWriterPool() *writerPool {
	p := &writerPool{ready: make(chan *session, writerQueue)}
	p.scratch.New = func() any { return new(burstWriter) }
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
	for sess := range p.ready {
		sess.ws.writeLoop(sess, &w)
	}
}

// submit queues sess's writer; false if the pool cannot take it now.
func (p *writerPool) submit(sess *session) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.stopped {
		return false
	}
	select {
	case p.ready <- sess:
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
	iov      iovScratch
	// pooled: a pool worker, whose writes must not block.
	pooled bool
	// What writeNow hands its system-call function (see there).
	writeFD func(fd uintptr) bool
	left    [][]byte
	err     error
}

// write writes w.pieces. A goroutine of the connection's own writes them
// all, blocking up to timeout; a pool worker writes what the socket takes
// now and returns the rest (nil when all went out), which then needs a
// goroutine of its own.
func (w *burstWriter) write(c *wsConn, timeout time.Duration) ([][]byte, error) {
	if !w.pooled {
		bufs := net.Buffers(w.pieces)
		return nil, c.write(&bufs, timeout)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	conn := c.socket()
	if c.done.Load() || conn == nil {
		return nil, net.ErrClosed
	}
	if c.raw == nil {
		sc, ok := conn.(syscall.Conn)
		if !ok {
			return w.pieces, nil
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return nil, err
		}
		c.raw = raw
	}
	return w.writeNow(c.raw, w.pieces)
}

// pooledWrites reports whether the pool can write this connection's bursts:
// it needs the socket itself, not a TLS layer over it.
func (c *wsConn) pooledWrites() bool {
	_, ok := c.socket().(syscall.Conn)
	return ok
}

// handOff finishes a burst the socket could not take at once on a goroutine
// of the connection's own: rest is what is left of w.pieces, q what was
// taken from the queue after them, which goes back to its head.
func (c *wsConn) handOff(sess *session, w *burstWriter, rest [][]byte, q []*hub.Delivery) {
	// The frame header and a protobuf batch header, the first two pieces,
	// live in w, which the worker reuses at once; the rest are shared frames
	// that never change.
	sent := len(w.pieces) - len(rest)
	own := make([][]byte, len(rest))
	for i, p := range rest {
		if sent+i < 2 {
			p = append([]byte(nil), p...)
		}
		own[i] = p
	}
	sess.mu.Lock()
	if len(q) > 0 && !sess.closed {
		sess.queue = append(q[:len(q):len(q)], sess.queue...)
	}
	sess.mu.Unlock()
	go func() {
		bufs := net.Buffers(own)
		if err := c.write(&bufs, sess.srv.opt.WriteTimeout); err != nil {
			c.writeFailed(sess, err)
			return
		}
		c.writeLoop(sess, nil)
	}()
}

// maxReusedQueue is the largest queue array a writer hands back for the
// next deliveries: under fan-out a connection's queue is mostly one or two
// deliveries, and reusing its array saves an allocation per delivery; a
// large one from a burst is left to the collector.
const maxReusedQueue = 8

// reuseQueue returns q emptied for reuse, or nil.
func reuseQueue(q []*hub.Delivery) []*hub.Delivery {
	if cap(q) == 0 || cap(q) > maxReusedQueue {
		return nil
	}
	q = q[:cap(q)]
	clear(q) // the deliveries it held may be collected
	return q[:0]
}

// writeFailed drops the connection whose write failed and ends its writer.
func (c *wsConn) writeFailed(sess *session, err error) {
	sess.srv.log.Debug("websocket write failed", "err", err)
	sess.srv.metrics.writeFailed(err)
	sess.kill("write failed")
	sess.mu.Lock()
	c.writing = false
	sess.mu.Unlock()
}

// advance drops the first n bytes from pieces, trimming a piece written in
// part.
func advance(pieces [][]byte, n int) [][]byte {
	for len(pieces) > 0 && n >= len(pieces[0]) {
		n -= len(pieces[0])
		pieces = pieces[1:]
	}
	if n > 0 {
		pieces[0] = pieces[0][n:]
	}
	return pieces
}
