package realtime

import (
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/netpoll"
)

// The WebSocket's reader: frames read until the connection ends, on a
// goroutine of the connection's own or, where the poller can take the
// socket, on a goroutine started each time it is readable; data messages
// go to the session's protocol.

// eventReader drives a WebSocket's reader from the server's poller instead
// of a goroutine parked in Read for the connection's whole life: an idle
// connection then costs no goroutine stack at all. When the socket is
// readable, a goroutine runs readLoop until it has handled a frame (or a
// whole fragmented message) and finds itself at a frame boundary, then arms
// the socket again and ends. A frame split across TCP segments is simply
// read to its end by that goroutine (a blocking read through the runtime's
// netpoller); a peer that stops halfway is dropped by the ping loop, as with
// a parked reader.
type eventReader struct {
	c    *wsConn
	sess *session
	poll *netpoll.Poller
	rc   syscall.RawConn
	tok  uint32
	// handled is owned by the running handler: it has read a frame in this
	// wake-up. Handlers of one socket never overlap (EPOLLONESHOT).
	handled bool
}

// startReader reads the connection's frames for its whole life, from the
// poller where possible, else on a goroutine of its own.
func (s *Server) startReader(c *wsConn, sess *session) {
	if !s.opt.GoroutineReaders && c.pollWith(s.poller(), sess) {
		return
	}
	go func() {
		defer readerEnded(sess)
		c.readLoop(s.opt.MaxPayload)
	}()
}

// readerEnded is what follows the end of a connection's reading.
func readerEnded(sess *session) {
	// Detached before it stops counting, as a client that sees the count
	// drop may expect.
	sess.detach()
	sess.srv.websockets.Add(-1)
}

// pollWith hands the connection's reading to p. It returns false if it
// cannot: no poller, a socket that is not a plain TCP one (TLS), handshake
// bytes already buffered (epoll knows only the socket), or an error.
func (c *wsConn) pollWith(p *netpoll.Poller, sess *session) bool {
	if p == nil {
		return false
	}
	conn := c.socket()
	sc, ok := conn.(syscall.Conn)
	if !ok || c.r != io.Reader(conn) {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	// One allocation per connection: the reader is its own handler.
	ev := &eventReader{c: c, sess: sess, poll: p, rc: rc}
	if ev.tok, err = p.Reserve(ev); err != nil {
		return false
	}
	c.connMu.Lock()
	if c.done.Load() {
		// Closed already: a goroutine reader sees it at once and ends.
		c.connMu.Unlock()
		p.Remove(ev.tok)
		return false
	}
	c.ev = ev
	c.connMu.Unlock()
	err = p.Watch(rc, ev.tok)
	if err == nil {
		return true
	}
	sess.srv.log.Debug("websocket: poller refused the socket; reading on a goroutine", "err", err)
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.done.Load() {
		// abort ran ev.end already, which did what the goroutine would.
		return true
	}
	c.ev = nil
	p.Remove(ev.tok)
	return false
}

// Readable is the poller's handler.
func (ev *eventReader) Readable() { ev.c.onReadable(ev.sess, ev.sess.srv.opt.MaxPayload) }

// end runs once, when abort has closed the socket.
func (ev *eventReader) end() {
	ev.poll.Remove(ev.tok)
	readerEnded(ev.sess)
}

// onReadable runs on a fresh goroutine each time the socket has something
// to read.
func (c *wsConn) onReadable(sess *session, maxPayload int64) {
	ev := c.ev.(*eventReader) // set before the socket was armed, never changed after
	ev.handled = false
	c.readLoop(maxPayload)
	if c.done.Load() {
		return // abort has run ev.end
	}
	if err := ev.poll.Rearm(ev.rc, ev.tok); err != nil {
		if !c.done.Load() {
			sess.srv.log.Debug("websocket: cannot watch the socket again", "err", err)
		}
		c.abort("rearm failed")
	}
}

// yield reports whether readLoop should give its goroutine back at this
// frame boundary: with an event reader, once it has handled a frame. The
// poller starts a new one when the socket is readable again.
func (c *wsConn) yield() bool {
	ev, ok := c.ev.(*eventReader)
	if !ok {
		return false
	}
	if !ev.handled {
		ev.handled = true
		return false
	}
	return true
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
