package realtime

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/message"
)

// The life of a subscriber connection, top to bottom: the subscribe route
// takes the request, the query is parsed and its credentials verified into
// a session with its protocol, the session is given its transport (a
// WebSocket or a long poll) and subscribed, what it missed is replayed,
// and the transport carries it until it ends.

// serveSub is the subscribe route: WebSocket upgrade or long poll on one path,
// as on the reference servers.
func (s *Server) serveSub(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodOptions:
		serveOptions(w, "GET, OPTIONS", subAllowHeaders)
	case http.MethodGet:
		s.metrics.handshake(isUpgrade(r))
		if isUpgrade(r) {
			s.serveWebSocket(w, r)
		} else {
			s.serveLongPoll(w, r)
		}
	default:
		methodNotAllowed(w, "GET, OPTIONS")
	}
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sess, chanErr := s.openSession(r.Context(), q)
	c := &wsConn{sess: sess}
	if chanErr == nil {
		sess.t = c
		// Subscribe before the handshake completes: a client that sees
		// the socket open may be sent events at once.
		if err := sess.subscribe(r.Context()); err != nil {
			s.logRefused(r, "websocket", err)
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
		s.logRefused(r, "websocket", errUpgrade)
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
		s.logRefused(r, "websocket", chanErr)
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

func (s *Server) serveLongPoll(w http.ResponseWriter, r *http.Request) {
	w.Header()["Access-Control-Expose-Headers"] = valueExposeMid
	q := r.URL.Query()
	ctx := r.Context()
	mid, recover := parseMid(q)
	var sess *session
	var lp *longPollConn
	var key keptKey
	if s.opt.KeepPolls {
		key = pollKey(s, r, q.Get("mid"))
		sess, lp = s.kept.take(s, r, q, key)
	}
	fresh := sess == nil
	if fresh {
		var err error
		if sess, err = s.openSession(ctx, q); err != nil {
			s.logRefused(r, "longpoll", err)
			writeError(w, errWrongChannelID)
			return
		}
		lp = newLongPollConn()
		sess.t = lp
	}
	s.pollings.Add(1)
	defer s.pollings.Add(-1)
	if fresh {
		if err := sess.attach(ctx, mid, recover); err != nil {
			s.answerFailedAttach(w, r, err)
			return
		}
	}
	kept := false
	defer func() {
		if !kept {
			sess.detach()
		}
	}()
	if !lp.wait(ctx, sess, s.opt.PollTimeout) {
		return
	}
	a := lp.answer(ctx, w, sess, q.Get("mid"), recover)
	// A client with nothing to resume from polls without mid next, and is
	// told where history ends (a 304 with Last-Message-Id) rather than sent
	// what came meanwhile: that poll needs a session of its own.
	if s.opt.KeepPolls && a.ok && a.mid != "" && ctx.Err() == nil && sess.prepareKeep(a.upTo, a.hasUpTo, a.left) {
		key.mid = a.mid
		kept = s.kept.keep(key, sess, lp, s.keptIdle)
	}
}

// answerFailedAttach answers a poll whose session could not be attached.
func (s *Server) answerFailedAttach(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case r.Context().Err() != nil:
		// The client left while its history was read: nothing failed.
		s.log.Debug("long poll ended before its answer", "err", err)
	case errors.Is(err, errHistory):
		s.log.Error("replay failed", "err", err)
		writeError(w, errLastMessages)
	case errors.Is(err, errDraining):
		s.logRefused(r, "longpoll", err)
		writeText(w, http.StatusServiceUnavailable, "Server is restarting.")
	default:
		s.log.Warn("long poll attach failed", "err", err)
		writeText(w, http.StatusServiceUnavailable, "Service unavailable.")
	}
}

// openSession builds the session a subscribe query asks for, with its
// protocol, or the reason to refuse it (the routes answer 4010 for any bad
// credential). Here, and only here, a protocol is chosen (by
// requestedProtocol).
func (s *Server) openSession(ctx context.Context, q url.Values) (*session, error) {
	var sess *session
	var err error
	switch requestedProtocol(q) {
	case "jsonrpc":
		sess, err = s.openRPCSession(ctx, q) // verifies a token, or CHANNEL_ID
	case "protobuf":
		sess, err = s.openSigned(ctx, q, protobufProtocol{})
	case "json":
		sess, err = s.openSigned(ctx, q, jsonProtocol{})
	default:
		sess, err = s.openSigned(ctx, q, textProtocol{})
	}
	if err == nil {
		bindTenant(ctx, sess) // shared mode: the request's portal
	}
	return sess, err
}

// openSigned opens a session over the signed channels of CHANNEL_ID.
func (s *Server) openSigned(ctx context.Context, q url.Values, p protocol) (*session, error) {
	elems, err := s.parseSubscribe(ctx, q)
	if err != nil {
		return nil, err
	}
	return newSession(s, elems, p), nil
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

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && headerHasToken(r.Header.Values("Connection"), "upgrade")
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
