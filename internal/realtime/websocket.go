package realtime

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/hub"
)

// wsConn is the WebSocket transport of a session. An idle connection costs
// one goroutine (the reader) or none (read from the poller, wsevents.go),
// and no buffers: frames are read header-first straight from the socket,
// and a writer runs only while there is something to send.
type wsConn struct {
	sess *session // nil for a connection refused after the upgrade

	// connMu guards conn, which is set once the handshake completes: the
	// session is subscribed (and can be cut) before that.
	connMu  sync.Mutex
	conn    net.Conn
	pending *pendingClose // a close asked for before conn was set
	r       io.Reader     // conn, or the handshake's reader while it holds bytes
	writeMu sync.Mutex
	alive   atomic.Bool
	done    atomic.Bool
	closing atomic.Bool // our close frame is sent; waiting for the peer's

	// ev is set, under connMu, when the poller drives the reader.
	ev *eventReader
	// raw is the socket for the writer pool's non-blocking writes, found
	// on the first one; guarded by writeMu.
	raw syscall.RawConn

	// missed counts text pings sent since the peer last sent anything.
	missed atomic.Int32
}

// setConn installs the upgraded socket and its reader. It returns false if
// the connection was ended before the handshake completed: cut (the socket
// is closed) or closed with a code (which is sent now, with its closing
// handshake).
func (c *wsConn) setConn(conn net.Conn, r io.Reader) bool {
	c.connMu.Lock()
	if c.done.Load() {
		c.connMu.Unlock()
		_ = conn.Close()
		return false
	}
	c.conn, c.r = conn, r
	pending := c.pending
	c.connMu.Unlock()
	if pending != nil {
		c.closeWith(pending.code, pending.reason)
		c.drain()
		return false
	}
	return true
}

// pendingClose is a close asked for before the socket existed.
type pendingClose struct {
	code   ws.StatusCode
	reason string
}

func (c *wsConn) socket() net.Conn {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.conn
}

// wake starts a writer, on the writer pool where it can take one. The
// session calls it, under its lock, when it has something to send and no
// writer is running.
func (c *wsConn) wake() {
	if !c.pooledWrites() || !c.sess.srv.writers.submit(c) {
		go c.writeLoop(nil)
	}
}

// close ends the connection with a numbered error; the reader closes the
// socket when the closing handshake ends.
func (c *wsConn) close(e *protoError) { c.closeWithError(e) }

// cut closes the socket without a handshake.
func (c *wsConn) cut(reason string) { c.abort(reason) }

// streams: a WebSocket outlives each batch.
func (c *wsConn) streams() bool { return true }

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
	for {
		q, end, reason := sess.next(written)
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

// withSocket runs one write on the socket, alone and bounded by timeout.
func (c *wsConn) withSocket(timeout time.Duration, write func(net.Conn) error) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	conn := c.socket()
	if c.done.Load() || conn == nil {
		return net.ErrClosed
	}
	if err := conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	err := write(conn)
	// A deadline left to expire would fail the writer pool's next write,
	// which sets none.
	if derr := conn.SetWriteDeadline(time.Time{}); err == nil {
		err = derr
	}
	return err
}

func (c *wsConn) write(bufs *net.Buffers, timeout time.Duration) error {
	return c.withSocket(timeout, func(conn net.Conn) error {
		_, err := bufs.WriteTo(conn)
		return err
	})
}

// writeFrame writes one control frame.
func (c *wsConn) writeFrame(f ws.Frame, timeout time.Duration) error {
	return c.withSocket(timeout, func(conn net.Conn) error { return ws.WriteFrame(conn, f) })
}

// closeTimeout bounds the close handshake we attempt before dropping a socket.
const closeTimeout = time.Second

// closeWith starts the closing handshake: it sends a close frame with code
// and reason and gives the peer closeTimeout to answer. The socket is not
// closed at once: closing it with the peer's frames unread makes the kernel
// send a reset, which can destroy the close frame before the client reads
// it, and the clients act on the code (4010 reloads their config). The
// reader, or drain where none runs, closes the socket when the peer's close
// arrives or the time is up.
func (c *wsConn) closeWith(code ws.StatusCode, reason string) {
	c.connMu.Lock()
	if c.conn == nil && !c.done.Load() {
		// Still in the handshake: setConn sends it.
		c.pending = &pendingClose{code, reason}
		c.connMu.Unlock()
		return
	}
	c.connMu.Unlock()
	if err := c.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)), closeTimeout); err != nil {
		c.abort(reason)
		return
	}
	c.closing.Store(true)
	if conn := c.socket(); conn != nil {
		_ = conn.SetReadDeadline(time.Now().Add(closeTimeout))
	}
	c.expireClose()
}

// drain finishes a closing handshake on a connection that has no reader
// running: it discards what the peer sends until its close frame, an error
// or the deadline, then closes the socket.
func (c *wsConn) drain() {
	if c.socket() != nil && c.r != nil {
		for c.closing.Load() {
			h, err := ws.ReadHeader(c.r)
			if err != nil {
				break
			}
			if _, err := io.CopyN(io.Discard, c.r, h.Length); err != nil || h.OpCode == ws.OpClose {
				break
			}
		}
	}
	c.abort("closed")
}

// closeWithError closes with a numbered error: its code, and "CODE: Text"
// as the reason, as Push server 2.x does.
func (c *wsConn) closeWithError(e *protoError) {
	c.closeWith(ws.StatusCode(e.code), e.Error())
}

// abort closes the socket without a handshake.
func (c *wsConn) abort(string) {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.done.Swap(true) || c.conn == nil {
		return
	}
	_ = c.conn.Close()
	c.aborted()
}

// ping is called by the server's ping loop of the protocol's keepalive,
// once per interval.
func (c *wsConn) ping() {
	if c.socket() == nil {
		return // still in its handshake: registered, but not yet able to answer
	}
	if ka := c.sess.proto.keepalive(); ka.text != nil {
		c.pingText(ka.text, ka.missed)
		return
	}
	sess := c.sess
	if !c.alive.Swap(false) {
		sess.srv.log.Debug("dropping websocket: no pong within the ping interval")
		sess.kill("ping timeout")
		return
	}
	// A writer busy on this socket proves nothing about the peer but makes a
	// ping pointless; try again next interval.
	if !c.writeMu.TryLock() {
		c.alive.Store(true)
		return
	}
	c.writeMu.Unlock()
	if err := c.writeFrame(ws.NewPingFrame(nil), sess.srv.opt.WriteTimeout); err != nil {
		sess.kill("ping failed")
	}
}

// pingText sends a ping as a text message. A peer that has sent nothing,
// not even a pong, for missed pings in a row is dropped.
func (c *wsConn) pingText(ping []byte, missed int32) {
	sess := c.sess
	if c.alive.Swap(false) {
		c.missed.Store(0)
	} else if c.missed.Add(1) >= missed {
		sess.srv.log.Debug("dropping websocket: no answer to text pings", "pings", missed)
		sess.kill("ping timeout")
		return
	}
	// A writer busy on the socket would hold the ping up; skip a round
	// rather than stall the loop (clients wait two intervals).
	if !c.writeMu.TryLock() {
		return
	}
	c.writeMu.Unlock()
	if err := c.writeFrame(ws.NewTextFrame(ping), sess.srv.opt.WriteTimeout); err != nil {
		sess.kill("ping failed")
	}
}

// readLoop reads client frames until the connection ends. Data messages go
// to the session's protocol, which may answer them on the socket. A frame
// that breaks RFC 6455 fails the connection with 1002 (1007 for bad UTF-8,
// 1009 over the payload limit) before anything it carries is used.
func (c *wsConn) readLoop(maxPayload int64) {
	sess := c.sess
	fr := frameReader{r: c.r, maxPayload: maxPayload}
	for {
		if !fr.open && c.yield() {
			return
		}
		f, err := fr.next()
		if err != nil {
			var bad *wsFailure
			if errors.As(err, &bad) {
				sess.srv.log.Debug("websocket protocol violation", "code", int(bad.code), "reason", bad.reason)
				c.fail(bad)
				return
			}
			if !c.done.Load() && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				sess.srv.log.Debug("websocket read failed", "err", err)
			}
			c.abort("read failed")
			return
		}
		c.alive.Store(true)
		switch {
		case f.partial:
		case f.op == ws.OpPing:
			_ = c.writeFrame(ws.NewPongFrame(f.payload), sess.srv.opt.WriteTimeout)
		case f.op == ws.OpPong:
		case f.op == ws.OpClose:
			// Echo the client's close, unless it answers ours, and end:
			// RFC 6455 §5.5.1.
			if !c.closing.Load() {
				_ = c.writeFrame(ws.NewCloseFrame(f.payload), closeTimeout)
			}
			c.abort("closed by client")
			return
		case f.op == ws.OpText || f.op == ws.OpBinary:
			if !c.receive(f.op, f.payload) {
				return
			}
		}
	}
}

// fail ends a connection whose peer broke the protocol (RFC 6455 §7.1.7):
// the close frame with the failure's code, then the socket. What the peer
// sends after the bad frame is no longer read as frames (the stream may be
// out of step), only discarded until the peer hangs up or closeTimeout
// passes: closing with bytes unread would make the kernel reset the
// connection, which can destroy the close frame before the peer reads it.
// The half-close tells the peer at once that nothing more is coming. A
// close of ours already sent is not followed by another.
func (c *wsConn) fail(f *wsFailure) {
	if c.closing.Load() {
		c.abort(f.reason)
		return
	}
	c.closeWith(f.code, f.reason)
	if !c.closing.Load() {
		return // the close frame could not be written; closeWith aborted
	}
	if cw, ok := c.socket().(interface{ CloseWrite() error }); ok {
		c.writeMu.Lock()
		_ = cw.CloseWrite()
		c.writeMu.Unlock()
	}
	_, _ = io.Copy(io.Discard, c.r)
	c.abort(f.reason)
}

// receive hands a data message to the protocol and sends its answer. It
// returns false when the connection ends: a numbered error closes it with
// its code, another error with 1011, a failed write drops it.
func (c *wsConn) receive(op ws.OpCode, data []byte) bool {
	sess := c.sess
	srv := sess.srv
	resp, err := sess.proto.receive(sess, op, data)
	var perr *protoError
	switch {
	case errors.As(err, &perr):
		srv.log.Debug("client request refused", "err", err)
		c.closeWithError(perr)
		c.drain()
		return false
	case err != nil:
		srv.log.Error("client request failed", "err", err)
		c.closeWith(ws.StatusInternalServerError, "Internal error.")
		c.drain()
		return false
	case resp != nil:
		f := ws.NewFrame(sess.format.opcode, true, resp)
		if err := c.writeFrame(f, srv.opt.WriteTimeout); err != nil {
			sess.kill("write failed")
			return false
		}
	}
	return true
}

var _ transport = (*wsConn)(nil)
