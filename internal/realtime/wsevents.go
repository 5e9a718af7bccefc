package realtime

import (
	"io"
	"syscall"
	"time"

	"github.com/pushpull/pushpull/internal/netpoll"
)

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
	ev := c.ev // set before the socket was armed, never changed after
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
	ev := c.ev
	if ev == nil {
		return false
	}
	if !ev.handled {
		ev.handled = true
		return false
	}
	return true
}

// expireClose bounds a closing handshake when no reader is waiting on the
// socket's read deadline: an event reader only runs once the peer sends.
func (c *wsConn) expireClose() {
	c.connMu.Lock()
	ev := c.ev
	c.connMu.Unlock()
	if ev != nil {
		time.AfterFunc(closeTimeout, func() { c.abort("close handshake timed out") })
	}
}

// aborted runs, under connMu, when abort has closed the socket: an event
// reader has no goroutine to notice, so the connection ends here.
func (c *wsConn) aborted() {
	if c.ev != nil {
		go c.ev.end()
	}
}
