package realtime

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/hub"
)

// wsConn is the WebSocket side of a session. An idle connection costs one
// goroutine (the reader) and no buffers: frames are read header-first
// straight from the socket, and a writer goroutine exists only while there is
// something to send.
type wsConn struct {
	// connMu guards conn, which is set once the handshake completes: the
	// session is subscribed (and can be cut) before that.
	connMu  sync.Mutex
	conn    net.Conn
	pending *pendingClose // a close asked for before conn was set
	r       io.Reader     // conn, or the handshake's reader while it holds bytes
	writeMu sync.Mutex
	writing bool // guarded by session.mu: a writer goroutine is running
	alive   atomic.Bool
	done    atomic.Bool
	closing atomic.Bool // our close frame is sent; waiting for the peer's

	// ev is set, under connMu, when the poller drives the reader.
	ev *eventReader
	// raw is the socket for the writer pool's non-blocking writes, found
	// on the first one; guarded by writeMu.
	raw syscall.RawConn

	// pubBudget limits what the client publishes over this connection.
	pubBudget connBucket
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sess, chanErr := s.openSession(q)
	s.metrics.handshake(transportWebSocket, chanErr)
	c := &wsConn{}
	if chanErr == nil {
		sess.ws = c
		sess.onDeliver = func() { c.startWriter(sess) }
		// Subscribe before the handshake completes: a client that sees
		// the socket open may be sent events at once.
		if err := sess.subscribe(r.Context()); err != nil {
			status, text := http.StatusServiceUnavailable, "Server is restarting."
			if !errors.Is(err, errDraining) {
				s.log.Warn("websocket attach failed", "err", err)
				text = "Service unavailable."
			}
			writeText(w, status, text)
			return
		}
		// Counted from here, so that a client that sees the handshake
		// complete also sees itself in /server-stat/.
		s.websockets.Add(1)
	}
	up := ws.HTTPUpgrader{}
	conn, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		// The upgrader has answered the client with 400 already.
		s.log.Debug("websocket upgrade failed", "remote", r.RemoteAddr, "err", err)
		if sess != nil {
			s.websockets.Add(-1)
			sess.detach()
		}
		return
	}
	var in io.Reader = conn
	if rw != nil && rw.Reader.Buffered() > 0 {
		in = io.MultiReader(io.LimitReader(rw.Reader, int64(rw.Reader.Buffered())), conn)
	}
	// Alive before the ping loops can see the socket: they skip a
	// connection without one, and would drop one not yet alive.
	c.alive.Store(true)
	if !c.setConn(conn, in) {
		// Closed while the handshake was under way (a newer connection
		// over the channel limit, a slow consumer, a shutdown).
		if sess != nil {
			s.websockets.Add(-1)
		}
		return
	}
	if chanErr != nil {
		// Refused after the upgrade, as Push server 2.x does: clients react
		// to close code 4010 by reloading their config, but only see 1006 for
		// a failed handshake.
		s.log.Debug("websocket refused", "remote", r.RemoteAddr, "err", chanErr)
		c.closeWithError(errWrongChannelID)
		c.drain()
		return
	}
	// Replay on the handler's goroutine, which ends when the handler
	// returns; the reader that stays for the connection's life gets a fresh
	// goroutine whose stack never grew for net/http, the replay or logging.
	mid, recover := parseMid(q)
	if err := sess.replay(r.Context(), mid, recover); err != nil {
		s.websockets.Add(-1)
		s.log.Error("replay failed", "err", err)
		c.closeWithError(errLastMessages)
		c.drain()
		return
	}
	s.startReader(c, sess)
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

// startWriter runs the writer unless one is running; called with session.mu held.
func (c *wsConn) startWriter(sess *session) {
	if c.writing {
		return
	}
	c.writing = true
	if !c.pooledWrites() || !sess.srv.writers.submit(sess) {
		go c.writeLoop(sess, nil)
	}
}

// writeLoop drains the session queue, coalescing everything queued into as
// few WebSocket messages as the format allows, and exits when the queue is
// empty so idle connections hold no writer goroutine. w is a pool worker's
// scratch space, or nil on a goroutine of the connection's own.
func (c *wsConn) writeLoop(sess *session, w *burstWriter) {
	if w == nil {
		w = sess.srv.writers.own()
		defer sess.srv.writers.release(w)
	}
	var written []*hub.Delivery // the queue last written out, reused
	for {
		sess.mu.Lock()
		q := sess.queue
		sess.queue = reuseQueue(written)
		written = q
		if len(q) == 0 {
			c.writing = false
			restarting, reason := sess.restarting, cmp.Or(sess.endReason, reasonServerRestart)
			sess.mu.Unlock()
			if restarting {
				c.closeWith(ws.StatusGoingAway, reason)
				sess.detach()
			}
			return
		}
		sess.mu.Unlock()
		for len(q) > 0 {
			var n, size int
			// Slot 0 is the frame header, known once the size is.
			w.pieces, n, size = sess.format.batch(append(w.pieces[:0], nil), q, w.batchHdr[:0])
			sess.srv.metrics.wrote(sess, q[:n])
			q = q[n:]
			w.pieces[0] = w.hdr[:headerInto(w.hdr[:], ws.Header{Fin: true, OpCode: sess.format.opcode, Length: int64(size)})]
			rest, err := w.write(c, sess.srv.opt.WriteTimeout)
			if err != nil {
				c.writeFailed(sess, err)
				return
			}
			if rest != nil {
				// The socket is full: a pool worker must not wait for it.
				c.handOff(sess, w, rest, q)
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

// ping is called by the server's ping loop once per interval.
func (c *wsConn) ping(sess *session) {
	if c.socket() == nil {
		return // still in its handshake: registered, but not yet able to answer
	}
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

// readLoop reads client frames until the connection ends. Text-mode clients
// send nothing but control frames; protobuf clients send RequestBatch
// messages (client publishing and channel stats), which are answered on the
// socket. Data messages of other modes are read, checked and ignored. A
// frame that breaks RFC 6455 fails the connection with 1002 (1007 for bad
// UTF-8, 1009 over the payload limit) before anything it carries is used.
func (c *wsConn) readLoop(sess *session, maxPayload int64) {
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
		case f.op == sess.format.opcode && (f.op == ws.OpBinary || sess.rpc != nil):
			// Data means something in protobuf requests and JSON-RPC
			// text (protocol version 5).
			handle := c.handleRequest
			if sess.rpc != nil {
				handle = c.handleRPC
			}
			if !handle(sess, f.payload) {
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

// handleRequest carries out a client's RequestBatch and answers it; a bad
// request closes the socket with its error code, as the reference does.
func (c *wsConn) handleRequest(sess *session, data []byte) bool {
	srv := sess.srv
	ctx, cancel := context.WithTimeout(context.Background(), srv.opt.WriteTimeout)
	defer cancel()
	who := sess.requester()
	who.source.conn = &c.pubBudget
	resp, err := srv.handleRequestBatch(ctx, data, who)
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
		if err := c.writeFrame(ws.NewBinaryFrame(resp), srv.opt.WriteTimeout); err != nil {
			sess.kill("write failed")
			return false
		}
	}
	return true
}

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && headerHasToken(r.Header.Values("Connection"), "upgrade")
}

var _ hub.Subscriber = (*session)(nil)
