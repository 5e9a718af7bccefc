package realtime

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// wsConn is the WebSocket transport of a session. An idle connection costs
// one goroutine (the reader) or none (read from the poller, wsreader.go),
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

	// ev is set, under connMu, when the poller drives the reader
	// (wsreader.go).
	ev polledReader
	// raw is the socket for the writer pool's non-blocking writes, found
	// on the first one; guarded by writeMu.
	raw syscall.RawConn

	// unanswered counts text pings sent since the peer last sent anything.
	unanswered atomic.Int32

	// lastWrite is when the writer last wrote a batch (merger.now), and
	// held the generation of its entry in the merger while it is held
	// there, else 0 (wsmerge.go).
	lastWrite atomic.Int64
	held      atomic.Uint64
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

// close ends the connection with a numbered error; the reader closes the
// socket when the closing handshake ends.
func (c *wsConn) close(e *protoError) { c.closeWithError(e) }

// cut closes the socket without a handshake.
func (c *wsConn) cut(reason string) { c.abort(reason) }

// streams: a WebSocket outlives each batch.
func (c *wsConn) streams() bool { return true }

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
		c.pingText(ka.text, ka.misses)
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
// not even a pong, for misses pings in a row is dropped.
func (c *wsConn) pingText(ping []byte, misses int32) {
	sess := c.sess
	if c.alive.Swap(false) {
		c.unanswered.Store(0)
	} else if c.unanswered.Add(1) >= misses {
		sess.srv.log.Debug("dropping websocket: no answer to text pings", "pings", misses)
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

var _ transport = (*wsConn)(nil)

// polledReader is the reader of a connection read from the poller
// (wsreader.go): it has no goroutine waiting on the socket.
type polledReader interface {
	// end runs once, when abort has closed the socket.
	end()
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
