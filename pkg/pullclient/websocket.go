package pullclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

const (
	// maxMessageSize bounds one WebSocket message or long-poll body: far
	// above what a server sends (1 MiB bodies, a few hundred replayed), low
	// enough that a broken peer cannot exhaust memory.
	maxMessageSize = 64 << 20
	// dialTimeout bounds connecting and the WebSocket handshake.
	dialTimeout = 10 * time.Second
	// pingSilence is how long a version 5 connection may go without the
	// server's text ping, once one came, before it is taken as stuck: the
	// official clients' 2 × PING_TIMEOUT.
	pingSilence = 20 * time.Second
	// closeStuck is the official clients' close code for a connection
	// whose pings stopped.
	closeStuck = 3005
)

// webSocket runs one WebSocket connection until it ends. connected
// reports whether the handshake succeeded.
func (r *runner) webSocket(ctx context.Context) (connected bool, err error) {
	target := r.requestURL(r.cfg.WebSocketURL)
	var status int
	var statusBody []byte
	dialer := ws.Dialer{
		Timeout: dialTimeout,
		// A server that checks the channels before the upgrade (Push
		// server 1.0), or a proxy that does not pass upgrades, answers
		// with a status; keep its body to say why.
		OnStatusError: func(code int, _ []byte, resp io.Reader) {
			status = code
			if res, err := http.ReadResponse(bufio.NewReader(resp), nil); err == nil {
				statusBody, _ = io.ReadAll(io.LimitReader(res.Body, maxShownBody))
				res.Body.Close()
			}
		},
	}
	conn, br, _, err := dialer.Dial(ctx, target)
	if err != nil {
		if status != 0 {
			return false, statusError(status, statusBody)
		}
		return false, fmt.Errorf("connect to %s: %w", redacted(r.cfg.WebSocketURL), err)
	}
	defer conn.Close()
	var src io.Reader = conn
	if br != nil { // frames that arrived with the handshake are buffered here
		src = br
		defer ws.PutReader(br)
	}
	// Reads block in the network; on cancellation an expired deadline wakes
	// the read below, which then says goodbye from this goroutine, the only
	// one that writes to conn.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	if r.cfg.Version >= 5 {
		r.setRPCConn(conn)
		defer r.setRPCConn(nil)
	}
	if err := r.emit(Connected{Transport: WebSocket, MID: r.lastMID()}); err != nil {
		r.closeWith(conn, ws.StatusNormalClosure)
		return true, err
	}

	// Pongs and the echo of a close go through the lock that version 5
	// callers write under.
	control := wsutil.ControlFrameHandler(lockedWriter{conn, &r.writeMu}, ws.StateClientSide)
	rd := &wsutil.Reader{
		Source:         src,
		State:          ws.StateClientSide,
		CheckUTF8:      true,
		MaxMessageSize: maxMessageSize,
		OnIntermediate: control,
	}
	want := ws.OpText
	if r.cfg.Version == 4 {
		want = ws.OpBinary
	}
	lost := func(err error) (bool, error) {
		if ctx.Err() != nil {
			r.closeWith(conn, ws.StatusNormalClosure)
			return true, ctx.Err()
		}
		var closed wsutil.ClosedError
		if errors.As(err, &closed) {
			return true, closeError(int(closed.Code), closed.Reason)
		}
		var ne net.Error
		if r.cfg.Version >= 5 && errors.As(err, &ne) && ne.Timeout() {
			r.closeWith(conn, closeStuck)
			return true, fmt.Errorf("no ping from the server for %s", pingSilence)
		}
		return true, fmt.Errorf("connection lost: %w", err)
	}
	for {
		hdr, err := rd.NextFrame()
		if err == nil && hdr.OpCode.IsControl() {
			if err = control(hdr, rd); err == nil { // answers pings, echoes a close
				continue
			}
		}
		if err != nil {
			return lost(err)
		}
		if hdr.OpCode != want {
			if err := rd.Discard(); err != nil {
				return lost(err)
			}
			continue
		}
		data, err := io.ReadAll(rd)
		if err != nil {
			return lost(err)
		}
		if r.cfg.Version >= 5 {
			if string(data) == "ping" {
				if err := r.pong(ctx, conn); err != nil {
					return lost(err)
				}
				continue
			}
			r.answerCalls(data)
		}
		if err := r.deliver(data); err != nil {
			if errors.Is(err, errSwitch) {
				r.closeWith(conn, ws.StatusNormalClosure)
			}
			return true, err
		}
	}
}

// pong answers a version 5 text ping, and gives the server pingSilence to
// send the next one.
func (r *runner) pong(ctx context.Context, conn net.Conn) error {
	if err := r.write(conn, []byte("pong")); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(pingSilence))
	if ctx.Err() != nil { // cancelled meanwhile: keep the read woken
		_ = conn.SetReadDeadline(time.Now())
	}
	return nil
}

// closeWith sends a close frame, briefly: the connection is being dropped
// whether or not the server reads it.
func (r *runner) closeWith(conn net.Conn, code ws.StatusCode) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(code, ""))
}

// lockedWriter writes under mu.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// redacted is raw without a password, for messages.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Redacted()
}
