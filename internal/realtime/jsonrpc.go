package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/token"
	"github.com/pushpull/pushpull/internal/wire"
)

// rpcConn is what a protocol version 5 (jsonRpc=true) connection adds to
// its session: who it is and what it watches.
type rpcConn struct {
	tenant string // the token's iss; "" for a CHANNEL_ID connection
	user   int64  // the token's sub; 0 for none
	// userChan is channel.User(tenant, user): messages addressed to the
	// user arrive through it, with that user's user_params.
	userChan channel.ID
	channels []channel.ID // from the token's chan or CHANNEL_ID, for listChannels

	// recent are the last delivered ids, guarded by session.mu: a message
	// can reach a connection through its user and through a channel, and
	// the JSON-RPC frame does not name the channel, so it is sent once.
	recent [8]message.ID
	next   int

	// missed counts pings sent since the peer last sent anything.
	missed atomic.Int32

	mu       sync.Mutex
	closed   bool
	present  bool                 // counted in the user's presence (a WebSocket)
	watching map[int64]channel.ID // status subscriptions: user → channel.Status
}

// isJSONRPC reports whether the subscribe query asks for protocol version 5.
// The clients send the literal "true".
func isJSONRPC(q url.Values) bool { return q.Get("jsonRpc") == "true" }

// openSession builds the session a subscribe query asks for, or the reason
// to refuse it (a *protoError, 4010 for any bad credential).
func (s *Server) openSession(q url.Values) (*session, error) {
	if isJSONRPC(q) {
		return s.openRPCSession(q)
	}
	elems, err := s.parseSubscribe(q)
	if err != nil {
		return nil, err
	}
	return newSession(s, elems, subscriberFormat(q)), nil
}

// openRPCSession authenticates a version 5 connection by token= (preferred,
// as the clients do) or CHANNEL_ID. A token's channels are trusted as
// signed by it; its user is reached through channel.User.
func (s *Server) openRPCSession(q url.Values) (*session, error) {
	rc := &rpcConn{}
	var elems []channel.Element
	if tok := q.Get("token"); tok != "" {
		c, err := token.Verify(tok, s.tokenKey, time.Now())
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errWrongChannelID, err)
		}
		if len(c.Channels) > s.opt.MaxChannelsPerRequest {
			return nil, fmt.Errorf("%w: %d channels in the token", errWrongChannelID, len(c.Channels))
		}
		rc.tenant, rc.user, rc.channels = c.Issuer, c.User, c.Channels
		for _, id := range c.Channels {
			elems = append(elems, channel.Element{ID: id})
		}
	} else {
		var err error
		if elems, err = s.parseSubscribe(q); err != nil {
			return nil, err
		}
		for _, e := range elems {
			rc.channels = append(rc.channels, e.ID)
		}
	}
	sess := newSession(s, elems, formatRPC)
	sess.rpc = rc
	if rc.user > 0 {
		rc.userChan = channel.User(rc.tenant, rc.user)
		sess.subs = append(sess.subs, hub.Subscription{Channel: rc.userChan})
		sess.chans = append(sess.chans, rc.userChan)
	}
	return sess, nil
}

// admit decides, under session.mu, whether a live delivery is new to this
// connection, and picks the delivery that carries the connection's
// user_params when the message has some for its user.
func (rc *rpcConn) admit(d *hub.Delivery) (*hub.Delivery, bool) {
	for _, id := range rc.recent {
		if id == d.Msg.ID {
			return nil, false
		}
	}
	rc.recent[rc.next] = d.Msg.ID
	rc.next = (rc.next + 1) % len(rc.recent)
	return rc.viaUser(d), true
}

// viaUser returns d, or the same message through the user's channel when
// it carries user_params for this user and came through another channel.
func (rc *rpcConn) viaUser(d *hub.Delivery) *hub.Delivery {
	if rc.user > 0 && d.Channel != rc.userChan && d.Msg.UserParams[rc.userChan] != nil {
		return hub.NewDelivery(d.Msg, rc.userChan)
	}
	return d
}

// The non-JSON text frames of version 5 (spec §9.1).
var (
	framePing  = []byte("ping")
	framePong  = []byte("pong")
	prefixMack = []byte("mack:")
)

const (
	// maxMissed is how many pings may go without any frame back before
	// the peer is taken for dead (the spec's proposal).
	maxMissed = 3
	// rpcCallTime bounds one client call: the clients give up after 5 s.
	rpcCallTime = 5 * time.Second
)

// handleRPC handles one text message of a version 5 client: pong, mack or
// JSON-RPC. Bad input is answered with a JSON-RPC error and never closes
// the connection; it returns false only when the socket failed.
func (c *wsConn) handleRPC(sess *session, data []byte) bool {
	srv := sess.srv
	switch {
	case bytes.Equal(data, framePong):
		return true
	case bytes.HasPrefix(data, prefixMack):
		// Acknowledgements are not needed for correctness: recovery is by
		// mid on reconnect.
		srv.log.Debug("message acknowledged", "mid", string(data[len(prefixMack):]))
		return true
	case bytes.Equal(data, framePing):
		return c.writeText(sess, framePong)
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcCallTime)
	defer cancel()
	resp := srv.serveRPC(ctx, data, rpcFace{
		run: func(ctx context.Context, call wire.RPCCall) (any, *wire.RPCError) {
			return srv.clientMethod(ctx, sess, call)
		},
		// As many as a version 4 client may put in one RequestBatch.
		maxCalls: maxMessagesPerRequest,
	})
	if resp == nil {
		return true
	}
	return c.writeText(sess, resp)
}

func (c *wsConn) writeText(sess *session, b []byte) bool {
	if err := c.writeFrame(ws.NewTextFrame(b), sess.srv.opt.WriteTimeout); err != nil {
		sess.kill("write failed")
		return false
	}
	return true
}

// rpcMethod carries out one call and returns its result (marshalled as
// JSON) or error.
type rpcMethod func(ctx context.Context, call wire.RPCCall) (any, *wire.RPCError)

// rpcFace is how the frames of one side, clients or backends, are served.
type rpcFace struct {
	run rpcMethod
	// answerAll answers notifications too, with id null, which the
	// backend's PHP client requires (spec §9.4).
	answerAll bool
	// maxCalls bounds a batch; 0 leaves it to the payload limit.
	maxCalls int
}

// serveRPC decodes a frame, runs each call and returns the answer: one
// response, an array for a batch, or nil when nothing is to be answered.
func (s *Server) serveRPC(ctx context.Context, data []byte, face rpcFace) []byte {
	calls, batch, ferr := wire.DecodeRPC(data)
	if ferr == nil && face.maxCalls > 0 && len(calls) > face.maxCalls {
		ferr = wire.NewRPCError(wire.RPCInvalidRequest, fmt.Sprintf("a batch holds at most %d calls", face.maxCalls))
	}
	if ferr != nil {
		return wire.AppendRPCError(nil, nil, ferr)
	}
	var out []byte
	n := 0
	for _, call := range calls {
		if call.Response {
			continue // a client answering our notification
		}
		var item []byte
		if call.Err != nil {
			item = wire.AppendRPCError(nil, call.ID, call.Err)
		} else {
			result, rerr := face.run(ctx, call)
			if !face.answerAll && call.IsNotification() {
				continue
			}
			item = s.rpcAnswer(call.ID, result, rerr)
		}
		if n == 0 && batch {
			out = append(out, '[')
		} else if n > 0 {
			out = append(out, ',')
		}
		out = append(out, item...)
		n++
	}
	if n == 0 {
		return nil
	}
	if batch {
		out = append(out, ']')
	}
	return out
}

func (s *Server) rpcAnswer(id json.RawMessage, result any, rerr *wire.RPCError) []byte {
	if rerr != nil {
		return wire.AppendRPCError(nil, id, rerr)
	}
	b, err := json.Marshal(result)
	if err != nil {
		s.log.Error("encode JSON-RPC result", "err", err)
		return wire.AppendRPCError(nil, id, wire.NewRPCError(wire.RPCInternalError, ""))
	}
	return wire.AppendRPCResult(nil, id, b)
}

// rpcPingLoop sends version 5 connections the text ping their clients
// expect: a client that gets none for 20 s takes the connection for stuck
// and reconnects. A peer that has sent nothing, not even a pong, for
// maxMissed pings is dropped.
func (s *Server) rpcPingLoop() {
	defer close(s.rpcPingDone)
	t := time.NewTicker(s.opt.RPCPingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopPing:
			return
		case <-t.C:
		}
		for _, sess := range s.liveSessions(func(sess *session) bool { return sess.ws != nil && sess.rpc != nil }) {
			sess.ws.rpcPing(sess)
		}
	}
}

func (c *wsConn) rpcPing(sess *session) {
	if c.alive.Swap(false) {
		sess.rpc.missed.Store(0)
	} else if sess.rpc.missed.Add(1) >= maxMissed {
		sess.srv.log.Debug("dropping JSON-RPC websocket: no pong", "pings", maxMissed)
		sess.kill("ping timeout")
		return
	}
	// A writer busy on the socket would hold the ping up; skip a round
	// rather than stall the loop (clients wait two intervals).
	if !c.writeMu.TryLock() {
		return
	}
	c.writeMu.Unlock()
	if err := c.writeFrame(ws.NewTextFrame(framePing), sess.srv.opt.WriteTimeout); err != nil {
		sess.kill("ping failed")
	}
}

// liveSessions returns the registered sessions that keep says to.
func (s *Server) liveSessions(keep func(*session) bool) []*session {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	var list []*session
	for sess := range s.sessions {
		if keep(sess) {
			list = append(list, sess)
		}
	}
	return list
}

// ackOverHTTP answers the mack:<mid> that a version 5 client on long
// polling posts to server.publish, where its connector sends every frame.
// It reports whether body was one.
func (s *Server) ackOverHTTP(w http.ResponseWriter, body []byte) bool {
	const maxAck = 64 // "mack:" and a 26-digit id, with room
	if len(body) > maxAck || !bytes.HasPrefix(body, prefixMack) {
		return false
	}
	s.log.Debug("message acknowledged", "mid", string(body[len(prefixMack):]))
	writeText(w, http.StatusOK, "")
	return true
}
