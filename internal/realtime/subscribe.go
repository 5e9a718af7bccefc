package realtime

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// serveSub is the subscribe route: WebSocket upgrade or long poll on one path,
// as on the reference servers.
func (s *Server) serveSub(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodOptions:
		serveOptions(w, "GET, OPTIONS", subAllowHeaders)
	case http.MethodGet:
		if isUpgrade(r) {
			s.serveWebSocket(w, r)
		} else {
			s.serveLongPoll(w, r)
		}
	default:
		methodNotAllowed(w, "GET, OPTIONS")
	}
}

// parseSubscribe validates a subscriber's CHANNEL_ID: every element signed,
// and one bad element refuses the whole list.
func (s *Server) parseSubscribe(q url.Values) ([]channel.Element, error) {
	return channel.ParseList(q.Get("CHANNEL_ID"), channel.ListOptions{
		Signer:           s.signer,
		RequireSignature: true,
		MaxElements:      s.opt.MaxChannelsPerRequest,
	})
}

// parseMid reads the recovery point. As on the reference servers, a mid that
// is not 26 digits is ignored rather than refused: the client then simply
// gets live messages.
func parseMid(q url.Values) (message.ID, bool) {
	v := q.Get("mid")
	if v == "" {
		return message.ID{}, false
	}
	id, err := message.ParseID(v)
	if err != nil {
		return message.ID{}, false
	}
	return id, true
}

// lpExpires is the Expires value that makes clients adopt Last-Message-Id on a
// 304 (docs/protocol.md, "Subscribing"); any other value and they ignore the
// header.
const lpExpires = "Thu, 01 Jan 1973 11:11:01 GMT"

func (s *Server) serveLongPoll(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Expose-Headers", "Last-Message-Id")
	q := r.URL.Query()
	sess, err := s.openSession(q)
	s.metrics.handshake(transportLongPoll, err)
	if err != nil {
		s.log.Debug("long poll refused", "remote", r.RemoteAddr, "err", err)
		writeError(w, errWrongChannelID)
		return
	}
	mid, recover := parseMid(q)
	sess.wake = make(chan struct{}, 1)
	s.pollings.Add(1)
	defer s.pollings.Add(-1)
	ctx := r.Context()
	if err := sess.attach(ctx, mid, recover); err != nil {
		switch {
		case ctx.Err() != nil:
			// The client left while its history was read: nothing failed.
			s.log.Debug("long poll ended before its answer", "err", err)
		case errors.Is(err, errHistory):
			s.log.Error("replay failed", "err", err)
			writeError(w, errLastMessages)
		case errors.Is(err, errDraining):
			writeText(w, http.StatusServiceUnavailable, "Server is restarting.")
		default:
			s.log.Warn("long poll attach failed", "err", err)
			writeText(w, http.StatusServiceUnavailable, "Service unavailable.")
		}
		return
	}
	defer sess.detach()

	timer := time.NewTimer(s.opt.PollTimeout)
	defer timer.Stop()
	select {
	case <-sess.wake:
	case <-timer.C:
	case <-ctx.Done():
		return
	}
	sess.mu.Lock()
	evicted := sess.evicted
	sess.mu.Unlock()
	if evicted != nil {
		writeError(w, evicted)
		return
	}
	// Where to resume is settled before the queue is taken: a message
	// stored after this point, and so missing from the answer, is newer
	// than the Last-Message-Id and recovered by the next poll.
	resume := s.resumeID(ctx, sess, q.Get("mid"), recover)
	// One response per poll, as the reference does: what arrives after this
	// is replayed from history on the next poll, which carries the new mid.
	if ds := sess.take(); len(ds) > 0 {
		pieces, n, size := sess.format.batch(nil, ds, make([]byte, 0, 16))
		s.metrics.wrote(sess, ds[:n])
		if n < len(ds) {
			// The rest comes with the next poll, from history.
			s.log.Debug("long poll answer truncated", "sent", n, "queued", len(ds))
		}
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Content-Type", sess.format.contentType)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(http.StatusOK)
		for _, p := range pieces {
			if _, err := w.Write(p); err != nil {
				return
			}
		}
		return
	}
	notModified(w, resume)
}

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
	h.Set("Last-Message-Id", last)
	h.Set("Expires", lpExpires)
	writeText(w, http.StatusNotModified, "")
}

// headerHasToken reports whether a comma-separated header lists token.
func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
