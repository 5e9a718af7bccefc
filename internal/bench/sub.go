package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/pkg/pullclient"
)

// sub is one subscriber connection.
type sub struct {
	idx    int
	signed string // its channel, signed: the CHANNEL_ID it subscribes with
	pubURL []byte // /pub/ target of its channel (private mode)

	connected bool // set by the connect phase before the reader starts
	// wasConnected is set once the first connect phase is over for the
	// subscribers it connected: a storm reconnects those.
	wasConnected bool

	// Read by other goroutines while the reader runs.
	received atomic.Int64
	ready    atomic.Bool
	alive    atomic.Bool

	// Owned by the reader goroutine; read by others only after it ended.
	conn       net.Conn  // WebSocket
	lp         *httpConn // long polling
	dups       int64
	outOfOrder int64
	misrouted  int64
	foreign    int64
	malformed  int64
	lastRecv   int64 // unix ns of the last counted delivery
	lastMid    [midLen]byte
	hasMid     bool
}

func (r *run) makeSubscribers() {
	r.subs = make([]*sub, r.cfg.Subscribers)
	var shared benchChannel
	if r.fanout {
		shared = r.newChannel()
		r.fanoutPub = shared.pubURL
	}
	for i := range r.subs {
		ch := shared
		if !r.fanout {
			ch = r.newChannel()
		}
		r.subs[i] = &sub{idx: i, signed: ch.signed, pubURL: ch.pubURL}
	}
}

// benchChannel is a channel the bench made up.
type benchChannel struct {
	id     string // 32 hex
	signed string // id.signature
	pubURL []byte // /pub/?CHANNEL_ID=id
}

func (r *run) newChannel() benchChannel {
	id := newChannelID()
	return benchChannel{
		id:     id.String(),
		signed: r.signer.SignChannel(id),
		pubURL: []byte("/pub/?CHANNEL_ID=" + id.String()),
	}
}

// connectAll opens the connections of subs at rate per second, with a
// bounded number of handshakes in flight, and starts their readers.
// Readers stop when subsCtx is cancelled (long polling) or their socket is
// closed (WebSocket). Failures are counted, not returned.
func (r *run) connectAll(ctx, subsCtx context.Context, subs []*sub, rate float64) error {
	sem := make(chan struct{}, r.cfg.ConnectConcurrency)
	var dials sync.WaitGroup
	defer dials.Wait()
	start := time.Now()
	for i, s := range subs {
		// Start no more than rate × elapsed connections so far.
		for {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if err := sleepCtx(ctx, max(d, time.Millisecond)); err != nil {
					return err
				}
				continue
			}
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		dials.Add(1)
		go func() {
			defer dials.Done()
			defer func() { <-sem }()
			if r.cfg.Transport == TransportWS {
				r.dialWS(ctx, s)
			} else {
				r.dialLP(subsCtx, s)
			}
		}()
	}
	return nil
}

func (r *run) dialWS(ctx context.Context, s *sub) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	d := ws.Dialer{Timeout: r.cfg.DialTimeout}
	mid := ""
	if s.hasMid {
		// As the official client does on reconnecting: the server replays
		// what was published after this message.
		mid = string(s.lastMid[:])
	}
	target := pullclient.SubscribeURL(r.subURL, r.version, pullclient.FormatText, []string{s.signed}, "", mid)
	conn, br, _, err := d.Dial(ctx, target)
	if err != nil {
		r.connectErrs.add(errKind(err))
		return
	}
	var src io.Reader = conn
	if br != nil {
		// Frames that came with the handshake: keep them, free the pool's reader.
		early := make([]byte, br.Buffered())
		_, _ = io.ReadFull(br, early)
		ws.PutReader(br)
		src = io.MultiReader(bytes.NewReader(early), conn)
	}
	s.conn = conn
	s.connected = true
	s.alive.Store(true)
	r.readers.Add(1)
	go r.readWS(s, src)
}

// dialLP opens a long-polling subscriber's keep-alive connection, which
// lives as long as subsCtx.
func (r *run) dialLP(subsCtx context.Context, s *sub) {
	c := &httpConn{addr: r.addr, host: r.host, dialTimeout: r.cfg.DialTimeout}
	if err := c.connect(subsCtx); err != nil {
		r.connectErrs.add(errKind(err))
		return
	}
	s.lp = c
	s.connected = true
	s.alive.Store(true)
	r.readers.Add(1)
	go r.pollLP(subsCtx, s)
}

// closeAll drops every connection and waits for the readers to end. It may
// be called more than once.
func (r *run) closeAll(dropSubs context.CancelFunc) {
	if r.closing.Swap(true) {
		r.readers.Wait()
		return
	}
	dropSubs()
	for _, s := range r.subs {
		if s != nil && s.conn != nil {
			_ = s.conn.Close()
		}
	}
	r.readers.Wait()
}

// aliveSubscribers returns the indexes of the subscribers whose connection
// is up.
func (r *run) aliveSubscribers() []int {
	var out []int
	for i, s := range r.subs {
		if s.alive.Load() {
			out = append(out, i)
		}
	}
	return out
}

// maxControl is the largest control frame payload (RFC 6455 §5.5).
const maxControl = 125

// readWS reads one WebSocket until it ends: header first into a reused
// buffer, then the payload into a reused message buffer. Server frames are
// not masked; pings get a pong.
func (r *run) readWS(s *sub, src io.Reader) {
	defer r.readers.Done()
	defer s.alive.Store(false)
	conn := s.conn
	br := bufio.NewReaderSize(src, 2048)
	var hdr [ws.MaxHeaderSize - 2]byte
	var ctl [maxControl]byte
	var msg []byte
	for {
		h, err := ws.ReadHeaderBuffer(br, hdr[:])
		if err != nil {
			r.ended(s, err)
			return
		}
		if h.Length > maxBody {
			r.ended(s, fmt.Errorf("frame of %d bytes", h.Length))
			return
		}
		switch h.OpCode {
		case ws.OpText, ws.OpBinary, ws.OpContinuation:
			n := len(msg)
			if h.OpCode != ws.OpContinuation {
				n = 0
			}
			need := n + int(h.Length)
			if need > maxBody {
				r.ended(s, fmt.Errorf("message over %d bytes", maxBody))
				return
			}
			if cap(msg) < need {
				grown := make([]byte, need, max(need, 4096, 2*cap(msg)))
				copy(grown, msg[:n])
				msg = grown
			}
			msg = msg[:need]
			if _, err := io.ReadFull(br, msg[n:]); err != nil {
				r.ended(s, err)
				return
			}
			if h.Masked {
				ws.Cipher(msg[n:], h.Mask, 0)
			}
			if h.Fin {
				r.deliver(s, msg, time.Now().UnixNano())
				msg = msg[:0]
			}
		case ws.OpPing, ws.OpPong, ws.OpClose:
			if h.Length > maxControl {
				r.ended(s, errors.New("control frame too long"))
				return
			}
			p := ctl[:h.Length]
			if _, err := io.ReadFull(br, p); err != nil {
				r.ended(s, err)
				return
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				pong := ws.MaskFrameInPlace(ws.NewPongFrame(append([]byte(nil), p...)))
				if err := ws.WriteFrame(conn, pong); err != nil {
					r.ended(s, err)
					return
				}
			case ws.OpClose:
				code, reason := ws.ParseCloseFrameData(p)
				r.ended(s, &closedError{code: code, reason: reason})
				return
			}
		default:
			if _, err := br.Discard(int(h.Length)); err != nil {
				r.ended(s, err)
				return
			}
		}
	}
}

// closedError is a close frame from the server.
type closedError struct {
	code   ws.StatusCode
	reason string
}

func (e *closedError) Error() string {
	if e.reason != "" {
		return fmt.Sprintf("closed by the server: %d %s", e.code, e.reason)
	}
	return fmt.Sprintf("closed by the server: %d", e.code)
}

// ended records why a connection ended, unless the bench is closing it.
func (r *run) ended(s *sub, err error) {
	if r.closing.Load() || r.dropping.Load() {
		return
	}
	r.disconnects.add(errKind(err))
}

// pollLP long-polls until ctx is cancelled, carrying the last mid from one
// poll to the next as the official clients do. Errors are counted and the
// poll is issued again on a new connection after a pause.
func (r *run) pollLP(ctx context.Context, s *sub) {
	defer r.readers.Done()
	defer s.alive.Store(false)
	c := s.lp
	defer c.close()
	// The request target of the Go client's URL, built once: each poll
	// only appends its mid, without allocating.
	full := pullclient.SubscribeURL(r.subURL, r.version, pullclient.FormatText, []string{s.signed}, "", "")
	prefix := full[strings.Index(full, "/sub/"):]
	target := []byte(prefix)
	for ctx.Err() == nil {
		target = append(target[:len(prefix)], "&mid="...)
		if s.hasMid {
			target = append(target, s.lastMid[:]...)
		} else {
			target = target[:len(prefix)]
		}
		a, err := c.do(ctx, "GET", target, nil, 0)
		now := time.Now().UnixNano()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.ended(s, err)
			if sleepCtx(ctx, 100*time.Millisecond) != nil {
				return
			}
			continue
		}
		switch a.status {
		case 200:
			r.deliver(s, a.body, now)
		case 304:
			if id := a.lastMessageID; len(id) == midLen && allDigits(id) &&
				(!s.hasMid || bytes.Compare(id, s.lastMid[:]) > 0) {
				copy(s.lastMid[:], id)
				s.hasMid = true
			}
		default:
			r.ended(s, fmt.Errorf("long poll answered HTTP %d: %.100s", a.status, bytes.TrimSpace(a.body)))
			if sleepCtx(ctx, 100*time.Millisecond) != nil {
				return
			}
		}
	}
}

// deliver takes one WebSocket message or poll answer received at now.
func (r *run) deliver(s *sub, data []byte, now int64) {
	var f frame
	if r.cfg.Binary {
		if err := forEachOutgoing(data, &f, func(f *frame) { r.take(s, f, now) }); err != nil {
			s.malformed++
		}
		return
	}
	for {
		rest, ok, err := nextFrame(data, &f)
		if err != nil {
			s.malformed++
			return
		}
		if !ok {
			return
		}
		data = rest
		r.take(s, &f, now)
	}
}

// take handles one received message.
func (r *run) take(s *sub, f *frame, now int64) {
	if !s.ready.Load() {
		s.ready.Store(true)
	}
	if f.hasMid {
		if !s.hasMid || bytes.Compare(f.mid[:], s.lastMid[:]) > 0 {
			s.lastMid, s.hasMid = f.mid, true
		} else if bytes.Compare(f.mid[:], s.lastMid[:]) < 0 {
			s.outOfOrder++
		}
	}
	if f.timed && r.counting.Load() {
		r.count(s, f, now)
	}
}

// count records one measured delivery.
func (r *run) count(s *sub, f *frame, now int64) {
	if f.seq >= r.planned {
		s.foreign++
		return
	}
	key := f.seq
	if r.fanout {
		key += int64(s.idx) * r.planned
	} else if int(r.targets[f.seq].Load())-1 != s.idx {
		s.misrouted++
	}
	bit := uint64(1) << (key % 64)
	if r.seen[key/64].Or(bit)&bit != 0 {
		s.dups++
		return
	}
	s.received.Add(1)
	s.lastRecv = now
	r.lat.record(s.idx, time.Duration(now-f.sent))
}

// errKind names an error for counting: the same failure on a thousand
// connections must be one line, so addresses and ports are left out.
func errKind(err error) string {
	var closed *closedError
	var status ws.StatusError
	var ne net.Error
	switch {
	case errors.As(err, &closed):
		return closed.Error()
	case errors.As(err, &status):
		return fmt.Sprintf("handshake answered HTTP %d", int(status))
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port (EADDRNOTAVAIL)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the server"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the server without a close frame"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Op + ": " + op.Err.Error()
	}
	return err.Error()
}
