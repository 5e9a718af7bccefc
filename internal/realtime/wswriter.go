package realtime

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/hub"
)

// The WebSocket's writer: woken by the session when it queues into an
// idle connection, it drains the queue into as few frames as the format
// allows, on a writer pool worker where it can (writerpool.go), and stops
// when the queue is empty.

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
	return w.vec.WriteNow(c.raw, w.pieces)
}

// wake starts a writer, on the writer pool where it can take one, or holds
// the connection back to merge what comes next when its socket was written
// less than the merge delay ago (wsmerge.go). The session calls it, under
// its lock, when it has something to send and no writer is running.
func (c *wsConn) wake() {
	if c.mergeLater() {
		return
	}
	c.start()
}

// holdGen is c's hold in the merger (wsmerge.go).
func (c *wsConn) holdGen() *atomic.Uint64 { return &c.held }

// start starts a writer now.
func (c *wsConn) start() {
	if !c.pooledWrites() || !c.sess.srv.writers.submit(c) {
		go c.writeLoop(nil)
	}
}

// mergeLater holds the connection's writer back until the merge delay since
// its last write has run out; false when it is to write now. It runs under
// the session's lock, which keeps the writer marked busy meanwhile.
func (c *wsConn) mergeLater() bool {
	m := c.sess.srv.writers.merge
	return m != nil && m.hold(c, time.Duration(c.lastWrite.Load()))
}

// hurry writes a held connection now: the session is ending, and its last
// messages and close frame are not kept waiting for others.
func (c *wsConn) hurry() {
	if c.held.Swap(0) != 0 {
		c.start()
	}
}

// wrote notes a write for the merge delay; false when there is none.
func (c *wsConn) wrote() bool {
	m := c.sess.srv.writers.merge
	if m == nil {
		return false
	}
	c.lastWrite.Store(int64(m.now()))
	return true
}

// writeLoop drains the session queue, coalescing everything queued into as
// few WebSocket messages as the format allows, and exits when the queue is
// empty so idle connections hold no writer goroutine. w is a pool worker's
// scratch space, or nil on a goroutine of the connection's own.
func (c *wsConn) writeLoop(w *burstWriter) {
	sess := c.sess
	if w == nil {
		w = sess.srv.writers.own()
		defer sess.srv.writers.release(w)
	}
	var written []*hub.Delivery // the queue last written out, reused
	// The first batch was let through by wake or the merger; after a write,
	// what queued meanwhile may be held for the merge delay.
	var later merging
	for {
		q, end, reason := sess.next(written, later)
		written = q
		if len(q) == 0 {
			if end {
				c.closeWith(ws.StatusGoingAway, reason)
				sess.detach()
			}
			return
		}
		for len(q) > 0 {
			var n, size int
			// Slot 0 is the frame header, known once the size is.
			w.pieces, n, size = sess.format.batch(append(w.pieces[:0], nil), q, w.batchHdr[:0])
			sess.srv.metrics.wrote(sess, q[:n])
			q = q[n:]
			w.pieces[0] = w.hdr[:headerInto(w.hdr[:], ws.Header{Fin: true, OpCode: sess.format.opcode, Length: int64(size)})]
			rest, err := w.write(c, sess.srv.opt.WriteTimeout)
			if err != nil {
				c.writeFailed(err)
				return
			}
			if rest != nil {
				// The socket is full: a pool worker must not wait for it.
				c.handOff(w, rest, q)
				return
			}
		}
		if c.wrote() {
			later = c
		}
	}
}

// headerInto encodes a frame header into buf (at least ws.MaxHeaderSize
// bytes) and returns its length, per RFC 6455 §5.2. ws.WriteHeader would
// do it through an io.Writer, at two allocations per frame on the fan-out
// path.
func headerInto(buf []byte, h ws.Header) int {
	b0 := byte(h.OpCode) | h.Rsv<<4
	if h.Fin {
		b0 |= 0x80
	}
	buf[0] = b0
	n := 2
	switch {
	case h.Length < 126:
		buf[1] = byte(h.Length)
	case h.Length <= 0xFFFF:
		buf[1] = 126
		binary.BigEndian.PutUint16(buf[2:], uint16(h.Length))
		n = 4
	default:
		buf[1] = 127
		binary.BigEndian.PutUint64(buf[2:], uint64(h.Length))
		n = 10
	}
	if h.Masked {
		buf[1] |= 0x80
		n += copy(buf[n:], h.Mask[:])
	}
	return n
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
func (c *wsConn) handOff(w *burstWriter, rest [][]byte, q []*hub.Delivery) {
	sess := c.sess
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
	sess.requeue(q)
	go func() {
		bufs := net.Buffers(own)
		if err := c.write(&bufs, sess.srv.opt.WriteTimeout); err != nil {
			c.writeFailed(err)
			return
		}
		c.wrote()
		c.writeLoop(nil)
	}()
}

// writeFailed drops the connection whose write failed and ends its writer.
func (c *wsConn) writeFailed(err error) {
	c.sess.srv.log.Debug("websocket write failed", "err", err)
	c.sess.srv.metrics.writeFailed(err)
	c.sess.writerFailed()
}
