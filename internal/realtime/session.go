package realtime

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/tenant"
)

// session is one subscriber connection: a WebSocket or one long-poll request.
// Deliveries are queued under mu and written by the transport; the queue is
// bounded so one slow reader cannot hold memory or the publishers.
//
// The session stands on two seams, both defined below. Its protocol, chosen
// at the handshake, frames what it sends and answers what the client sends;
// its transport is how the bytes leave. Neither knows the other, and the
// session knows neither's kind.
type session struct {
	srv   *Server
	subs  []hub.Subscription
	chans []channel.ID // the channels listened on and their public ids: presence
	// publisher is the first public id of CHANNEL_ID: who this connection
	// publishes as to other clients (protocol version 4).
	publisher channel.ID
	hasPublic bool
	proto     protocol
	format    format // proto's, read on every batch
	t         transport
	tenant    *tenant.Tenant // shared mode: the portal (tenant_session.go)
	// pubBudget limits what the client publishes over this connection.
	pubBudget connBucket

	mu         sync.Mutex
	queue      []*hub.Delivery
	recovering bool // deliveries wait in queue until the replay is queued before them
	// replayedUpTo is the newest replayed id. A live delivery at or before it
	// was stored before the history was read, so it was replayed already:
	// the broker delivers in id order, and stores before it delivers.
	replayedUpTo message.ID
	// knownUpTo is the mid the client recovered from: it has every message
	// up to it. A message published before this connection subscribed can
	// still be on its way from the broker when the connection is live (the
	// client may have got it from history on its previous connection); it
	// is not sent again. Messages published later are never held back, so a
	// bogus future mid cannot silence a connection.
	knownUpTo  message.ID
	hasKnown   bool
	subscribed time.Time
	closed     bool
	// sending: the transport was woken and has not yet found the queue
	// empty (next), so it need not be woken again.
	sending   bool
	closeOnce sync.Once
	evicted   *protoError // set when a newer connection pushed this one out
	// restarting ends a WebSocket once its queue is written, with
	// endReason (the server's restart unless set).
	restarting bool
	endReason  string
	// replayed is the size of the replay queued at connect: it may exceed
	// the send queue, which bounds only what queues behind it.
	replayed int
	// partial: history held more than the replay read, so a long poll's
	// next poll reads on from history (keptpoll.go).
	partial bool
}

func newSession(srv *Server, elems []channel.Element, p protocol) *session {
	s := &session{srv: srv, proto: p, format: p.format(), recovering: true}
	for _, e := range elems {
		s.subs = append(s.subs, hub.Subscription{Channel: e.ID, Public: e.Public, HasPublic: e.HasPublic})
		s.chans = append(s.chans, e.ID)
	}
	for _, e := range elems {
		if e.HasPublic {
			if !s.hasPublic {
				s.publisher, s.hasPublic = e.Public, true
			}
			s.chans = append(s.chans, e.Public)
		}
	}
	return s
}

// historyChannels are where this connection's messages are stored: its
// channels and the public ids that alias them.
func (s *session) historyChannels() []channel.ID { return s.chans }

// localChannel maps a history channel to the channel this connection listens
// on (a public id to its private channel).
func (s *session) localChannel(id channel.ID) channel.ID {
	for _, sub := range s.subs {
		if sub.HasPublic && sub.Public == id {
			return sub.Channel
		}
	}
	return id
}

// subscribe makes the session receive live deliveries, which wait in its
// queue until replay has run. A WebSocket subscribes before the handshake
// completes, so that a client that sees the connection open can rely on
// everything published from then on reaching it.
func (s *session) subscribe(ctx context.Context) error {
	s.subscribed = time.Now()
	if err := s.srv.register(s); err != nil {
		return err
	}
	for _, old := range s.srv.limit.add(s, s.subs) {
		s.srv.log.Info("closing the oldest connection of a channel over the limit", "limit", s.srv.opt.MaxConnPerChannel)
		s.srv.metrics.drops[dropConnectionLimit].Add(1)
		old.evict(errTooManyConnections)
	}
	s.srv.hub.Attach(s, s.subs)
	if err := s.srv.broker.Attach(ctx, s.chans); err != nil {
		s.srv.hub.Detach(s, s.subs)
		s.srv.limit.remove(s, s.subs)
		s.srv.unregister(s)
		return fmt.Errorf("attach: %w", err)
	}
	s.proto.attached(ctx, s)
	return nil
}

// knownLocked reports whether the client had d before it connected.
func (s *session) knownLocked(d *hub.Delivery) bool {
	return s.hasKnown && !s.knownUpTo.Less(d.Msg.ID) && d.Msg.Created.Before(s.subscribed)
}

// Deliver implements hub.Subscriber.
func (s *session) Deliver(d *hub.Delivery) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if !s.recovering && (!s.replayedUpTo.Less(d.Msg.ID) || s.knownLocked(d)) {
		s.mu.Unlock()
		return
	}
	var ok bool
	if d, ok = s.proto.admit(d); !ok {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= s.srv.opt.SendQueue+s.replayed {
		// Deliver runs under the hub's locks, so the connection is only cut
		// here; its reader (or long-poll handler) detaches it.
		s.closed = true
		s.srv.metrics.drops[dropSlowConsumer].Add(1)
		s.queue = nil
		s.mu.Unlock()
		s.srv.log.Warn("dropping slow subscriber: send queue full", "queue", s.srv.opt.SendQueue, "channels", len(s.chans))
		s.cut("slow consumer")
		return
	}
	s.queue = append(s.queue, d)
	if !s.recovering && len(s.queue) == 1 {
		s.notifyLocked()
	}
	s.mu.Unlock()
}

// notifyLocked wakes the transport unless it is awake already.
func (s *session) notifyLocked() {
	if s.sending {
		return
	}
	s.sending = true
	s.t.wake()
}

// take removes and returns everything queued.
func (s *session) take() []*hub.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

// next is take for a transport's writer, which calls it until the queue is
// empty: written is the batch it wrote last, whose array the queue reuses.
// With nothing queued the writer stops (a delivery wakes the transport
// again), and end says whether the connection is to close now that all is
// written, with reason.
func (s *session) next(written []*hub.Delivery) (q []*hub.Delivery, end bool, reason string) {
	s.mu.Lock()
	q = s.queue
	s.queue = reuseQueue(written)
	if len(q) == 0 {
		s.sending = false
		end, reason = s.restarting, cmp.Or(s.endReason, reasonServerRestart)
	}
	s.mu.Unlock()
	return q, end, reason
}

// requeue puts deliveries taken by next but not written back at the head
// of the queue.
func (s *session) requeue(q []*hub.Delivery) {
	s.mu.Lock()
	if len(q) > 0 && !s.closed {
		s.queue = append(q[:len(q):len(q)], s.queue...)
	}
	s.mu.Unlock()
}

// writerFailed is what a transport's writer calls when it stops on a
// failed write instead of an empty queue: the connection is dropped.
func (s *session) writerFailed() {
	s.kill("write failed")
	s.mu.Lock()
	s.sending = false
	s.mu.Unlock()
}

// maxReusedQueue is the largest queue array a writer hands back for the
// next deliveries: under fan-out a connection's queue is mostly one or two
// deliveries, and reusing its array saves an allocation per delivery; a
// large one from a burst is left to the collector.
const maxReusedQueue = 8

// reuseQueue returns q emptied for reuse, or nil.
func reuseQueue(q []*hub.Delivery) []*hub.Delivery {
	if cap(q) == 0 || cap(q) > maxReusedQueue {
		return nil
	}
	q = q[:cap(q)]
	clear(q) // the deliveries it held may be collected
	return q[:0]
}

// evictedBy is the numbered error that ended the session, if one did.
func (s *session) evictedBy() *protoError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evicted
}

// detach ends the subscription; safe to call more than once.
func (s *session) detach() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.queue = nil
		s.mu.Unlock()
		s.srv.hub.Detach(s, s.subs)
		s.srv.limit.remove(s, s.subs)
		s.proto.detached(s)
		// The embedded broker cannot fail here; a cluster broker's presence
		// keys expire on their own if it does.
		if err := s.srv.broker.Detach(context.Background(), s.chans); err != nil {
			s.srv.log.Warn("detach from broker", "err", err)
		}
		s.srv.unregister(s)
	})
}

// evict ends the connection with a numbered error: a close frame for a
// WebSocket, the error's HTTP status for a long poll.
func (s *session) evict(e *protoError) {
	s.mu.Lock()
	s.evicted = e
	s.mu.Unlock()
	s.t.close(e)
	s.detach()
}

// kill drops the connection at once.
func (s *session) kill(reason string) {
	s.cut(reason)
	s.detach()
}

// cut closes the transport without touching the hub, so it is safe under
// the hub's locks.
func (s *session) cut(reason string) { s.t.cut(reason) }

// restart queues the server_restart command (if any) and ends the
// connection once it is written.
func (s *session) restart(m *message.Message) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.restarting, s.endReason = true, ""
	if m != nil && len(s.chans) > 0 {
		s.queue = append(s.queue, hub.NewDelivery(m, s.chans[0]))
	}
	// A session still recovering may have no socket yet (a WebSocket
	// between subscribe and the end of its handshake): its replay starts
	// the writer once the socket is there, and sees restarting then. Woken
	// now, the writer would find no socket, and the client would lose
	// server_restart with its connection.
	if !s.recovering {
		s.notifyLocked()
	}
	s.mu.Unlock()
	if m == nil && !s.t.streams() {
		s.kill(reasonServerRestart)
	}
}

// reasonServerRestart is the close reason of a graceful shutdown (1001).
const reasonServerRestart = "server restart"

// reasonReplayContinues is the close reason (1001) of a WebSocket whose
// recovery was more than one connection replays: the client reconnects with
// the last mid it got and the replay continues from there.
const reasonReplayContinues = "replay continues"

// protocol is one subscribe protocol: text (version 3), JSON, protobuf
// (version 4) or JSON-RPC (version 5). openSession (connect.go) chooses one
// value per connection at the handshake; from then on the session and its
// transport ask it, never which protocol it is. A protocol with no state of
// its own is one shared value; one with state (version 5) is a value per
// connection.
//
// Adding a protocol is a file with a type that implements this, and its
// line in openSession.
type protocol interface {
	// format frames the protocol's deliveries.
	format() format
	// admit decides whether a live delivery is sent, and may replace it
	// (another channel's delivery of the same message). It runs under the
	// session's lock and the hub's, on the fan-out path.
	admit(d *hub.Delivery) (*hub.Delivery, bool)
	// replayed may replace a delivery recovered from history, as admit
	// does a live one.
	replayed(d *hub.Delivery) *hub.Delivery
	// attached runs once the session is subscribed; detached once, when it
	// ends. They hold and release what the protocol keeps beyond the
	// session's channels.
	attached(ctx context.Context, sess *session)
	detached(sess *session)
	// receive carries out a data message (op is ws.OpText or ws.OpBinary)
	// that the client sent over a WebSocket, and returns the answer to
	// send in the protocol's format (nil for none). A *protoError closes
	// the connection with its code; another error with 1011.
	receive(sess *session, op ws.OpCode, data []byte) ([]byte, error)
	// keepalive is how the protocol's WebSockets are pinged.
	keepalive() keepalive
}

// keepalive is how a protocol's WebSockets are kept alive and found dead.
type keepalive struct {
	// text, when set, is a ping sent as a text message every
	// Options.RPCPingInterval, which a peer that has sent nothing for
	// misses pings in a row does not survive. Without it, a control-frame
	// ping goes every Options.PingInterval to a peer that must have sent
	// something since the last.
	text   []byte
	misses int32
}

// transport is how a session's bytes leave: a WebSocket (websocket.go) or
// a long poll (longpoll.go). The session owns its queue: a transport takes
// from it with take or next and puts back with requeue, and never locks the
// session or touches what its lock guards.
type transport interface {
	// wake tells the transport that the session has something to send or
	// is to end. It runs under the session's lock (and the hub's), so it
	// must not block or call back into the session.
	wake()
	// close ends the connection with a numbered error: a close frame with
	// its code, or its HTTP status.
	close(e *protoError)
	// cut drops the connection at once. It must not touch the hub: it may
	// run under the hub's locks.
	cut(reason string)
	// ping keeps the connection alive and finds a dead peer, once per
	// interval of the protocol's keepalive.
	ping()
	// streams reports whether the connection outlives one answer: it reads
	// a long recovery page after page and ends itself when told to.
	streams() bool
}

// wrote records one socket write of ds to sess, if it is in the sample
// (hub.Delivery.Sampled): its size, and the latency of the oldest live
// message in it (queues are in id order). Writes outside the sample cost a
// hash and a mask; a sampled one reads the clock and updates two shared
// histograms, which on every write of a wide fan-out would cost as much as
// the rest of the delivery without a system call. Replayed messages were
// created before the connection subscribed and are left out: their age is
// the client's absence, not the server's delay.
func (c *counters) wrote(sess *session, ds []*hub.Delivery) {
	// The connection's subscribe time tells it from the others.
	if !ds[0].Sampled(uint64(sess.subscribed.UnixNano())) {
		return
	}
	c.batch.Observe(int64(len(ds)))
	for _, d := range ds {
		if d.Msg.Created.After(sess.subscribed) {
			c.latency.Observe(int64(time.Since(d.Msg.Created)))
			return
		}
	}
}
