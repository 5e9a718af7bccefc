package realtime

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/tenant"
	"github.com/pushpull/pushpull/internal/token"
)

// A long-polling client polls again at once over the same keep-alive
// connection, with the same query and the mid of what it got last. Building
// its session anew for every poll (verify, subscribe in the hub, the broker
// and presence, read history from mid, unsubscribe) is a third of what a
// poll costs the server. So the session of a poll that ends normally is
// kept with its connection, still subscribed, and the next poll of that
// connection takes it over when it asks for exactly what the session
// serves: the same path and query but for mid, the same portal and signer,
// a token still valid, and a mid that is where the last answer left the
// client. Anything else, and the kept session is dropped and the poll
// served as a new one, as before. What arrives between two polls waits in
// the kept session's queue, where history would have had it.
//
// A kept session ends with its connection (closed, or hijacked for a
// WebSocket), when no poll takes it over within keptPollIdle, with the
// server's shutdown like any session, and when it is cut or evicted: the
// next poll then starts afresh.

// keptPollIdle is how long a kept session waits for its connection's next
// poll. A client polls again as soon as it has read an answer; one that
// has not within this has gone elsewhere (or away) with its connection
// still open, and its session would only count against the channel's
// connection cap and keep its user online. It is ended, and a later poll
// starts afresh.
const keptPollIdle = 5 * time.Second

// pollSlot holds the session kept by one connection between two polls.
type pollSlot struct {
	mu    sync.Mutex
	kept  *keptPoll
	done  bool        // the connection is gone: nothing more is kept
	timer *time.Timer // ends kept at kept.until; made with the first keep
}

// keptPoll is a session kept between two polls, and what a poll must match
// to take it over.
type keptPoll struct {
	sess   *session
	lp     *longPollConn
	path   string
	query  string // the raw query of the poll that built it
	mid    string // the mid the client polls with next
	signer *channel.Signer
	tenant *tenant.Tenant
	until  time.Time // ended then if no poll took it over
}

type pollSlotKey struct{}

// KeepPolls lets hs's connections keep a long poll's session for the
// next poll on the same connection. Without it every poll builds its
// session anew. It chains hs's ConnContext and ConnState, so call it once
// hs is otherwise configured and before it serves.
func (s *Server) KeepPolls(hs *http.Server) {
	var slots sync.Map // net.Conn → *pollSlot
	prevCtx, prevState := hs.ConnContext, hs.ConnState
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prevCtx != nil {
			ctx = prevCtx(ctx, c)
		}
		slot := &pollSlot{}
		slots.Store(c, slot)
		return context.WithValue(ctx, pollSlotKey{}, slot)
	}
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateClosed || st == http.StateHijacked {
			if v, ok := slots.LoadAndDelete(c); ok {
				v.(*pollSlot).close()
			}
		}
		if prevState != nil {
			prevState(c, st)
		}
	}
}

// pollSlotOf is the slot of r's connection, nil where none is kept
// (KeepPolls not called, or not HTTP/1: one HTTP/2 connection carries many
// polls at once).
func pollSlotOf(r *http.Request) *pollSlot {
	if r.ProtoMajor != 1 {
		return nil
	}
	slot, _ := r.Context().Value(pollSlotKey{}).(*pollSlot)
	return slot
}

// take removes the kept session and returns it if r may take it over;
// one that r may not is ended.
func (p *pollSlot) take(s *Server, r *http.Request, q map[string][]string) (*session, *longPollConn) {
	if p == nil {
		return nil, nil
	}
	p.mu.Lock()
	k := p.kept
	p.kept = nil
	p.mu.Unlock()
	if k == nil {
		return nil, nil
	}
	if !k.matches(s, r, q) || !k.sess.reusable() {
		k.sess.detach()
		return nil, nil
	}
	return k.sess, k.lp
}

// keep stores k for the connection's next poll, for at most idle; false
// if the connection is gone or holds one already.
func (p *pollSlot) keep(k *keptPoll, idle time.Duration) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || p.kept != nil {
		return false
	}
	p.kept = k
	k.until = time.Now().Add(idle)
	if p.timer == nil {
		p.timer = time.AfterFunc(idle, p.expire)
	} else {
		p.timer.Reset(idle)
	}
	return true
}

// expire ends the kept session if it has waited its time; the timer
// may fire for one taken over since, whose successor waits on.
func (p *pollSlot) expire() {
	p.mu.Lock()
	k := p.kept
	if k != nil && time.Now().Before(k.until) {
		p.timer.Reset(time.Until(k.until))
		k = nil
	} else {
		p.kept = nil
	}
	p.mu.Unlock()
	if k != nil {
		k.sess.detach()
	}
}

// close ends the kept session: the connection is gone.
func (p *pollSlot) close() {
	p.mu.Lock()
	k := p.kept
	p.kept, p.done = nil, true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
	if k != nil {
		k.sess.detach()
	}
}

// matches reports whether the poll r asks for what k serves.
func (k *keptPoll) matches(s *Server, r *http.Request, q map[string][]string) bool {
	ctx := r.Context()
	if r.URL.Path != k.path || !sameQueryButMid(r.URL.RawQuery, k.query) ||
		tenantFrom(ctx) != k.tenant || s.signerOf(ctx) != k.signer {
		return false
	}
	if firstValue(q, "mid") != k.mid {
		return false
	}
	// A version 5 token expires: it is checked again on every poll, as a
	// new session would check it.
	if tok := firstValue(q, "token"); tok != "" && requestedProtocol(q) == "jsonrpc" {
		if _, err := token.Verify(tok, s.tokenKeyOf(ctx), time.Now()); err != nil {
			return false
		}
	}
	return true
}

func firstValue(q map[string][]string, name string) string {
	if vs := q[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// sameQueryButMid reports whether two raw queries hold the same
// parameters, in the same order and spelling, once their mid parameters are
// left out. Anything spelled differently counts as different, which only
// costs a session rebuilt.
func sameQueryButMid(a, b string) bool {
	for {
		var pa, pb string
		pa, a = nextNonMid(a)
		pb, b = nextNonMid(b)
		if pa != pb {
			return false
		}
		if pa == "" && a == "" && b == "" {
			return true
		}
	}
}

// nextNonMid returns the next parameter of raw that is not mid, and the
// rest of raw after it.
func nextNonMid(raw string) (param, rest string) {
	for raw != "" {
		param, raw, _ = strings.Cut(raw, "&")
		if param != "mid" && !strings.HasPrefix(param, "mid=") {
			return param, raw
		}
	}
	return "", ""
}

// reusable reports whether a kept session can serve another poll: nothing
// cut or evicted it while it waited. One told of a shutdown serves one
// more, which answers server_restart at once.
func (s *session) reusable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.evicted == nil && !s.partial
}

// prepareKeep readies a session whose answer is written for the next poll:
// left holds what the answer had no room for, and the server told the
// client of everything up to upTo if hasUpTo. A delivery at or before upTo
// still on its way from the broker was answered, or is older than where
// the client resumes (history would not return it), so it is not queued.
func (s *session) prepareKeep(upTo message.ID, hasUpTo bool, left []*hub.Delivery) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.evicted != nil || s.restarting || s.partial {
		return false
	}
	if hasUpTo && s.replayedUpTo.Less(upTo) {
		s.replayedUpTo = upTo
	}
	q := make([]*hub.Delivery, 0, len(left)+len(s.queue))
	for _, ds := range [2][]*hub.Delivery{left, s.queue} {
		for _, d := range ds {
			if !hasUpTo || upTo.Less(d.Msg.ID) {
				q = append(q, d)
			}
		}
	}
	s.queue = q
	s.replayed = len(left)
	// With nothing queued, the next delivery wakes the next poll.
	s.sending = len(q) > 0
	return true
}

// pending reports whether a poll would be answered at once: something is
// queued or the session has ended.
func (s *session) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0 || s.closed || s.evicted != nil || s.restarting
}
