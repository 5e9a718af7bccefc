package realtime

import (
	"errors"
	"log/slog"
	"net"
	"slices"
	"syscall"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/netpoll"
)

// The writer pool's io_uring worker (serve --socket-writes io_uring): it
// takes up to ringBatch connections with something to send, frames each
// one's next message as writeLoop would, and hands all their writes to the
// kernel in one io_uring_enter instead of one writev each. What follows a
// write is writeLoop's too: a connection whose socket took everything
// stays for its next burst, one whose socket is full is handed off to a
// goroutine of its own, one whose write failed is dropped.

// ringBatch is the most connections one io_uring_enter writes to.
const ringBatch = 512

func (p *writerPool) workRing(r *netpoll.Ring, log *slog.Logger) {
	defer p.done.Done()
	slots := make([]burstWriter, ringBatch)
	free := make([]*burstWriter, 0, ringBatch)
	for i := range slots {
		slots[i].pooled = true
		free = append(free, &slots[i])
	}
	var (
		active, framed []*burstWriter
		writes         []netpoll.RingWrite
		rcs            []syscall.RawConn
		fds            []int
		hold           netpoll.FDHold
		ringErr        error
	)
	var wrote int64
	submit := func() { ringErr = r.Writev(writes) }
	finish := func() {
		p.ringWrites.Add(wrote)
		p.ringCalls.Add(int64(r.Enters()))
		r.Close()
	}
	take := func(c burstSource) {
		w := free[len(free)-1]
		free = free[:len(free)-1]
		w.src = c
		active = append(active, w)
	}
	for c := range p.ready {
		take(c)
		for len(active) > 0 {
			// More connections that are ready, without waiting for any.
		topUp:
			for len(free) > 0 {
				select {
				case c, ok := <-p.ready:
					if !ok {
						break topUp
					}
					take(c)
				default:
					break topUp
				}
			}
			// Frame first, lock after: framing can end a writer, with a
			// close frame written under its connection's lock.
			framed, rcs, writes = framed[:0], rcs[:0], writes[:0]
			for _, w := range active {
				if w.src.nextBurst(w) {
					framed = append(framed, w)
				} else {
					free = append(free, w.reset())
				}
			}
			active = append(active[:0], framed...)
			framed = framed[:0]
			for _, w := range active {
				rc, err := w.src.lockSocket()
				if err != nil {
					w.src.burstWritten(w, 0, err)
					free = append(free, w.reset())
					continue
				}
				framed = append(framed, w)
				rcs = append(rcs, rc)
				writes = append(writes, netpoll.RingWrite{Pieces: w.pieces})
			}
			fds = slices.Grow(fds[:0], len(rcs))[:len(rcs)]
			wrote += int64(len(writes))
			hold.Run(rcs, fds, func() {
				for i := range writes {
					writes[i].FD = fds[i]
				}
				submit()
			})
			active = active[:0]
			for i, w := range framed {
				w.src.unlock()
				n, err := writes[i].N, writes[i].Err
				if ringErr != nil {
					n, err = 0, errRingFailed
				}
				if w.src.burstWritten(w, n, err) {
					active = append(active, w)
				} else {
					free = append(free, w.reset())
				}
			}
			clear(writes)
			clear(rcs)
			if ringErr != nil {
				log.Error("io_uring failed: this writer goes on with writev", "err", ringErr)
				finish()
				var w burstWriter
				w.pooled = true
				for c := range p.ready {
					c.writeLoop(&w)
				}
				return
			}
		}
	}
	finish()
}

// reset empties w for another connection and returns it.
func (w *burstWriter) reset() *burstWriter {
	clear(w.pieces[:cap(w.pieces)]) // the frames it pointed to may be collected
	w.pieces = w.pieces[:0]
	w.src, w.q, w.written = nil, nil, nil
	return w
}

// nextBurst is writeLoop up to its write: it takes the session's queue when
// w holds nothing of it, and frames its next message into w.pieces.
func (c *wsConn) nextBurst(w *burstWriter) bool {
	sess := c.sess
	if len(w.q) == 0 {
		q, end, reason := sess.next(w.written)
		w.written = q
		if len(q) == 0 {
			if end {
				c.closeWith(ws.StatusGoingAway, reason)
				sess.detach()
			}
			return false
		}
		w.q = q
	}
	var n, size int
	// Slot 0 is the frame header, known once the size is.
	w.pieces, n, size = sess.format.batch(append(w.pieces[:0], nil), w.q, w.batchHdr[:0])
	sess.srv.metrics.wrote(sess, w.q[:n])
	w.q = w.q[n:]
	w.pieces[0] = w.hdr[:headerInto(w.hdr[:], ws.Header{Fin: true, OpCode: sess.format.opcode, Length: int64(size)})]
	return true
}

// lockSocket is burstWriter.write's part before the write: the lock, and
// the socket if the connection is still open.
func (c *wsConn) lockSocket() (syscall.RawConn, error) {
	c.writeMu.Lock()
	conn := c.socket()
	if c.done.Load() || conn == nil {
		c.writeMu.Unlock()
		return nil, net.ErrClosed
	}
	if c.raw == nil {
		sc, ok := conn.(syscall.Conn)
		if !ok { // pooledWrites keeps these off the pool
			c.writeMu.Unlock()
			return nil, errors.ErrUnsupported
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			c.writeMu.Unlock()
			return nil, err
		}
		c.raw = raw
	}
	return c.raw, nil
}

func (c *wsConn) unlock() { c.writeMu.Unlock() }

// burstWritten is writeLoop after its write.
func (c *wsConn) burstWritten(w *burstWriter, n int, err error) bool {
	if errors.Is(err, syscall.EAGAIN) {
		err = nil
	}
	if err != nil {
		c.writeFailed(err)
		return false
	}
	if rest := netpoll.Advance(w.pieces, n); len(rest) > 0 {
		// The socket is full: a pool worker must not wait for it.
		c.handOff(w, rest, w.q)
		return false
	}
	return true
}
