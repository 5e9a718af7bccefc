package realtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

// session is one subscriber connection: a WebSocket or one long-poll request.
// Deliveries are queued under mu and written by the transport; the queue is
// bounded so one slow reader cannot hold memory or the publishers.
type session struct {
	srv   *Server
	subs  []hub.Subscription
	chans []channel.ID // the channels listened on and their public ids: presence
	// publisher is the first public id of CHANNEL_ID: who this connection
	// publishes as to other clients (protocol version 4).
	publisher channel.ID
	hasPublic bool
	format    format
	ws        *wsConn  // nil for long polling
	rpc       *rpcConn // protocol version 5 (jsonRpc=true); nil otherwise

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
	wake       chan struct{} // long polling: signalled on the first delivery
	onDeliver  func()        // WebSocket: starts the writer
	closeOnce  sync.Once
	evicted    *protoError // set when a newer connection pushed this one out
	// restarting ends a WebSocket once its queue is written, with
	// endReason (the server's restart unless set).
	restarting bool
	endReason  string
	// replayed is the size of the replay queued at connect: it may exceed
	// the send queue, which bounds only what queues behind it.
	replayed int
}

func newSession(srv *Server, elems []channel.Element, f format) *session {
	s := &session{srv: srv, format: f, recovering: true}
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

// requester is this connection as the author of client requests.
func (s *session) requester() requester {
	return requester{publisher: s.publisher, hasPublic: s.hasPublic}
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

// attach subscribes the session and then replays what it missed after mid.
// Subscribing first and buffering live deliveries until the replay is queued
// is what closes the gap between "read history" and "receive live": a message
// published in between is either in the history or in the buffer, and one
// that is in both is sent once.
func (s *session) attach(ctx context.Context, mid message.ID, recover bool) error {
	if err := s.subscribe(ctx); err != nil {
		return err
	}
	return s.replay(ctx, mid, recover)
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
	for _, old := range s.srv.limit.add(s) {
		s.srv.log.Info("closing the oldest connection of a channel over the limit", "limit", s.srv.opt.MaxConnPerChannel)
		s.srv.metrics.drops[dropConnectionLimit].Add(1)
		old.evict(errTooManyConnections)
	}
	s.srv.hub.Attach(s, s.subs)
	if err := s.srv.broker.Attach(ctx, s.chans); err != nil {
		s.srv.hub.Detach(s, s.subs)
		s.srv.limit.remove(s)
		s.srv.unregister(s)
		return fmt.Errorf("attach: %w", err)
	}
	if s.rpc != nil && s.rpc.user > 0 && s.ws != nil {
		s.srv.userArrived(ctx, s)
	}
	return nil
}

// replay queues what the session missed after mid ahead of the live
// deliveries buffered since subscribe, and starts delivery.
func (s *session) replay(ctx context.Context, mid message.ID, recover bool) error {
	var missed missed
	if recover {
		var err error
		if missed, err = s.readMissed(ctx, mid); err != nil {
			s.detach()
			return fmt.Errorf("%w: %w", errHistory, err)
		}
	}
	replay := missed.deliveries
	s.srv.metrics.recovered(recover, len(replay))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recovering = false
	if recover {
		s.knownUpTo, s.hasKnown = mid, true
	}
	if missed.more && s.ws != nil {
		s.restarting, s.endReason = true, reasonReplayContinues
		s.srv.log.Debug("recovery beyond one connection's replay; the client comes back for the rest", "replayed", len(replay))
	}
	if len(replay) > 0 {
		// A buffered live delivery of a replayed message is dropped
		// whichever channel it came through: a replay lists each message
		// once.
		sent := make(map[message.ID]struct{}, len(replay))
		for _, d := range replay {
			sent[d.Msg.ID] = struct{}{}
		}
		s.replayedUpTo = replay[len(replay)-1].Msg.ID
		s.replayed = len(replay)
		live := s.queue
		s.queue = replay
		for _, d := range live {
			if _, dup := sent[d.Msg.ID]; !dup && !s.knownLocked(d) {
				s.queue = append(s.queue, d)
			}
		}
	} else if s.hasKnown {
		kept := s.queue[:0]
		for _, d := range s.queue {
			if !s.knownLocked(d) {
				kept = append(kept, d)
			}
		}
		clear(s.queue[len(kept):])
		s.queue = kept
	}
	if len(s.queue) > 0 || s.restarting {
		s.notifyLocked()
	}
	return nil
}

var errHistory = fmt.Errorf("history unavailable")

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
	if s.rpc != nil {
		var ok bool
		if d, ok = s.rpc.admit(d); !ok {
			s.mu.Unlock()
			return
		}
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

func (s *session) notifyLocked() {
	if s.wake != nil {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	if s.onDeliver != nil {
		s.onDeliver()
	}
}

// take removes and returns everything queued.
func (s *session) take() []*hub.Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q
}

// detach ends the subscription; safe to call more than once.
func (s *session) detach() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.queue = nil
		s.mu.Unlock()
		s.srv.hub.Detach(s, s.subs)
		s.srv.limit.remove(s)
		if s.rpc != nil {
			s.srv.rpcDetached(s)
		}
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
	if s.ws != nil {
		// The reader closes the socket when the handshake ends.
		s.ws.closeWithError(e)
	} else {
		s.cut(e.text)
	}
	s.detach()
}

// kill drops the connection at once.
func (s *session) kill(reason string) {
	s.cut(reason)
	s.detach()
}

// cut closes the transport without touching the hub, so it is safe under
// the hub's locks.
func (s *session) cut(reason string) {
	if s.ws != nil {
		s.ws.abort(reason)
	}
	if s.wake != nil {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

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
	s.notifyLocked()
	s.mu.Unlock()
	if s.ws == nil && m == nil {
		s.kill(reasonServerRestart)
	}
}
