package realtime

import (
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

// A long-polling client polls again at once, with the same query and the
// mid of what it got last. Building its session anew for every poll
// (verify, subscribe in the hub, the broker and presence, read history
// from mid, unsubscribe) is a large share of what a poll costs the server.
// So, with Options.KeepPolls, the session of a poll that ends normally is
// kept a few seconds, still subscribed, and the next poll that asks for
// exactly what it serves takes it over: the same path, the same query but
// for the parameters the subscribe path never reads and the clients change
// from poll to poll (mid, and the tag and time the official clients send),
// the same portal and signer, a token still valid, and as mid the point
// the last answer left the client at. What arrives in between waits in its
// queue, where history would have had it.
//
// The poll that takes it over may come on any connection: the official
// clients' HTTP stacks do not keep one connection per client. Whoever
// sends that query holds the same credentials and gets, after that mid,
// what a new session would read from history, so it makes no difference
// which of two identical clients (two tabs of one user at the same mid)
// takes which session.
//
// A kept session ends when no poll takes it over within keptPollIdle, when
// it is cut or evicted (the next poll then starts afresh), and at shutdown,
// like a client between two polls today.

// keptPollIdle is how long a kept session waits for its client's next
// poll. A client polls again as soon as it has read an answer; one that
// has not within this has gone, and its session would only count against
// the channel's connection cap and keep its user online.
const keptPollIdle = 5 * time.Second

// pollIgnored are the query parameters left out when a poll is matched
// with a kept session: mid is matched on its own, and the subscribe path
// reads neither tag nor time (the official text clients send the last
// message's, as nginx's push module wanted them).
var pollIgnored = [...]string{"mid", "tag", "time"}

// keptKey is what a poll must match to take over a kept session.
type keptKey struct {
	path   string
	query  string // the raw query without the pollIgnored parameters
	mid    string
	tenant *tenant.Tenant
	signer *channel.Signer
}

// keptPolls are the sessions kept between polls. The zero value is ready
// to use.
type keptPolls struct {
	mu     sync.Mutex
	m      map[keptKey][]*keptPoll
	closed bool // shutting down: nothing more is kept
}

// keptPoll is a long poll's session and its place among the kept. One is
// made per session, with its first keep, and reused for the next.
type keptPoll struct {
	sess  *session
	lp    *longPollConn
	key   keptKey
	kept  bool      // in keptPolls.m
	until time.Time // ended then if no poll took it over
	timer *time.Timer
}

// pollKey is the key of the kept session poll r would take over.
func pollKey(s *Server, r *http.Request, mid string) keptKey {
	ctx := r.Context()
	return keptKey{path: r.URL.Path, query: queryForKeeping(r.URL.RawQuery), mid: mid,
		tenant: tenantFrom(ctx), signer: s.signerOf(ctx)}
}

// take removes and returns a kept session that the poll r with the parsed
// query q and the key pollKey made of it may take over, if there is one.
func (k *keptPolls) take(s *Server, r *http.Request, q map[string][]string, key keptKey) (*session, *longPollConn) {
	if key.mid == "" {
		return nil, nil
	}
	k.mu.Lock()
	list := k.m[key]
	if len(list) == 0 {
		k.mu.Unlock()
		return nil, nil
	}
	kp := list[len(list)-1]
	k.removeLocked(kp)
	k.mu.Unlock()
	if !kp.sess.reusable() || !tokenStillValid(s, r, q) {
		kp.sess.detach()
		return nil, nil
	}
	return kp.sess, kp.lp
}

// tokenStillValid checks a version 5 token again, as a new session would:
// it expires.
func tokenStillValid(s *Server, r *http.Request, q map[string][]string) bool {
	tok := firstValue(q, "token")
	if tok == "" || requestedProtocol(q) != "jsonrpc" {
		return true
	}
	_, err := token.Verify(tok, s.tokenKeyOf(r.Context()), time.Now())
	return err == nil
}

// keep keeps the session of lp, answered with next as the mid of the
// client's next poll, for at most idle; false when shutting down.
func (k *keptPolls) keep(key keptKey, sess *session, lp *longPollConn, idle time.Duration) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return false
	}
	kp := lp.keptAs
	if kp == nil {
		kp = &keptPoll{sess: sess, lp: lp}
		kp.timer = time.AfterFunc(idle, func() { k.expire(kp) })
		lp.keptAs = kp
	} else {
		kp.timer.Reset(idle)
	}
	kp.key, kp.kept, kp.until = key, true, time.Now().Add(idle)
	if k.m == nil {
		k.m = make(map[keptKey][]*keptPoll)
	}
	k.m[key] = append(k.m[key], kp)
	return true
}

// removeLocked takes kp out of the kept.
func (k *keptPolls) removeLocked(kp *keptPoll) {
	list := k.m[kp.key]
	for i, other := range list {
		if other == kp {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(k.m, kp.key)
	} else {
		k.m[kp.key] = list
	}
	kp.kept = false
}

// expire ends kp if it is still kept and has waited its time; the timer
// may fire for a keep that a poll took over since.
func (k *keptPolls) expire(kp *keptPoll) {
	k.mu.Lock()
	if !kp.kept {
		k.mu.Unlock()
		return
	}
	if left := time.Until(kp.until); left > 0 {
		kp.timer.Reset(left)
		k.mu.Unlock()
		return
	}
	k.removeLocked(kp)
	k.mu.Unlock()
	kp.sess.detach()
}

// close ends every kept session and keeps no more: the server is shutting
// down, and a client between two polls is told so by its next poll's 503,
// as before sessions were kept.
func (k *keptPolls) close() {
	k.mu.Lock()
	k.closed = true
	var list []*keptPoll
	for _, kps := range k.m {
		list = append(list, kps...)
	}
	clear(k.m)
	for _, kp := range list {
		kp.kept = false
		kp.timer.Stop()
	}
	k.mu.Unlock()
	for _, kp := range list {
		kp.sess.detach()
	}
}

func firstValue(q map[string][]string, name string) string {
	if vs := q[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// queryForKeeping is raw without the pollIgnored parameters, the others as
// they are spelled and in their order: anything spelled differently counts
// as different, which only costs a session rebuilt.
func queryForKeeping(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	for raw != "" {
		var param string
		param, raw, _ = strings.Cut(raw, "&")
		if param == "" || pollParamIgnored(param) {
			continue // an empty one means nothing (url.ParseQuery skips it)
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(param)
	}
	return b.String()
}

// pollParamIgnored reports whether a raw query parameter is one of
// pollIgnored, spelled plainly.
func pollParamIgnored(param string) bool {
	name, _, _ := strings.Cut(param, "=")
	for _, n := range pollIgnored {
		if name == n {
			return true
		}
	}
	return false
}

// reusable reports whether a kept session can serve another poll: nothing
// cut or evicted it, and no shutdown told it to end, while it waited.
func (s *session) reusable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.evicted == nil && !s.restarting && !s.partial
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
