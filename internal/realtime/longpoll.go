package realtime

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

// longPollConn is the transport of one long-poll request: it waits for the
// first delivery (or the end), then answers with everything queued, and the
// client polls again with the last mid it got.
type longPollConn struct {
	woken chan struct{}
	// keptAs is the session's place among the kept (keptpoll.go), made
	// with its first keep; guarded by Server.kept's lock.
	keptAs *keptPoll
}

func newLongPollConn() *longPollConn { return &longPollConn{woken: make(chan struct{}, 1)} }

var _ transport = (*longPollConn)(nil)

// wake ends the wait: there is something to answer.
func (lp *longPollConn) wake() {
	select {
	case lp.woken <- struct{}{}:
	default:
	}
}

// close ends the wait; the answer is the session's numbered error.
func (lp *longPollConn) close(*protoError) { lp.wake() }

// cut ends the wait; the answer is whatever the session still holds.
func (lp *longPollConn) cut(string) { lp.wake() }

// ping does nothing: a long poll ends within its timeout anyway.
func (lp *longPollConn) ping() {}

// streams: a long poll ends with its answer.
func (lp *longPollConn) streams() bool { return false }

// wait blocks until the session has something to answer or timeout
// passes; false if the client left first.
func (lp *longPollConn) wait(ctx context.Context, sess *session, timeout time.Duration) bool {
	// A wake left over from the previous poll of a kept session tells
	// nothing: the queue does. Whatever is queued after this wakes again.
	select {
	case <-lp.woken:
	default:
	}
	if sess.pending() {
		return true
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-lp.woken:
	case <-timer.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// answered is how a poll ended, for keeping its session for the next.
type answered struct {
	ok bool // answered with deliveries or 304, not an error
	// mid is what the client sends as mid next ("": none).
	mid string
	// upTo, if hasUpTo, is the newest id the server itself told the
	// client of: the last message sent, or the newest stored when the
	// client had no mid. Never the client's own mid, which may be bogus
	// (a future mid must not silence a connection).
	upTo    message.ID
	hasUpTo bool
	// left are the deliveries the answer had no room for.
	left []*hub.Delivery
}

// answer ends the poll: the numbered error that ended the session, the
// deliveries queued, or 304 with where to resume. givenMid and recovered
// are the poll's mid and whether it was valid.
func (lp *longPollConn) answer(ctx context.Context, w http.ResponseWriter, sess *session, givenMid string, recovered bool) answered {
	if evicted := sess.evictedBy(); evicted != nil {
		writeError(w, evicted)
		return answered{}
	}
	// Where to resume is settled before the queue is taken: a message
	// stored after this point, and so missing from the answer, is newer
	// than the Last-Message-Id and recovered by the next poll.
	resume := sess.srv.resumeID(ctx, sess, givenMid, recovered)
	// One response per poll, as the reference does: what arrives after this
	// is replayed from history on the next poll, which carries the new mid,
	// or waits in the session if the next poll keeps it.
	if ds := sess.take(); len(ds) > 0 {
		var stack [8][]byte
		var hdr [16]byte
		pieces, n, size := sess.format.batch(stack[:0], ds, hdr[:0])
		sess.srv.metrics.wrote(sess, ds[:n])
		if n < len(ds) {
			sess.srv.log.Debug("long poll answer truncated", "sent", n, "queued", len(ds))
		}
		h := w.Header()
		h["Access-Control-Allow-Origin"] = valueAnyOrigin
		h["Content-Type"] = contentTypeValue(sess.format.contentType)
		h["Content-Length"] = []string{strconv.Itoa(size)}
		w.WriteHeader(http.StatusOK)
		for _, p := range pieces {
			if _, err := w.Write(p); err != nil {
				return answered{}
			}
		}
		last := ds[n-1].Msg.ID
		return answered{ok: true, upTo: last, hasUpTo: true, mid: last.String(), left: ds[n:]}
	}
	notModified(w, resume)
	a := answered{ok: true, mid: resume}
	if resume != "" && !recovered {
		id, err := message.ParseID(resume)
		if err != nil {
			return answered{}
		}
		a.upTo, a.hasUpTo = id, true
	}
	return a
}

// lpExpires is the Expires value that makes clients adopt Last-Message-Id on a
// 304 (docs/protocol.md, "Subscribing"); any other value and they ignore the
// header.
const lpExpires = "Thu, 01 Jan 1973 11:11:01 GMT"

// valueLPExpires is lpExpires as a shared header value (see respond.go's
// shared values).
var valueLPExpires = []string{lpExpires}

// resumeID is the Last-Message-Id of a poll that ends with nothing new: the
// mid the client sent, or else the newest stored message of its channels, or
// nothing.
func (s *Server) resumeID(ctx context.Context, sess *session, givenMid string, valid bool) string {
	if valid {
		return givenMid
	}
	if id, ok, err := s.broker.LastID(ctx, sess.historyChannels()); err == nil && ok {
		return id.String()
	}
	return ""
}

// notModified ends a poll with nothing new. Last-Message-Id tells the client
// where to resume. A 200 with no messages is never sent: it would clear the
// client's mid.
func notModified(w http.ResponseWriter, last string) {
	h := w.Header()
	h["Last-Message-Id"] = []string{last}
	h["Expires"] = valueLPExpires
	writeText(w, http.StatusNotModified, "")
}
