package realtime

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

// historyLostBody tells a recovering client that history no longer holds
// everything after its mid. It is the clients' config_expire system command
// (docs/protocol.md, "System commands"): both official clients drop the
// connection at once, reload their config and reconnect with the mid of the
// last message they handled, and their status goes offline and online again,
// which is what Bitrix applications resynchronise on. server_restart would
// make them wait 15 s; an unknown pull command would be ignored. See
// docs/decisions.md.
const historyLostBody = `{"module_id":"pull","command":"config_expire","params":{}}`

// WebSocket recoveries read page after page until they have caught up, but
// no further than Options.ReplayPerConnection messages (default
// wsReplayMessages) or wsReplayBytes of bodies per connection: every
// replayed delivery is encoded for this connection alone. Beyond it the
// connection ends once the replay is written, and the client reconnects with
// the last mid it got.
const (
	wsReplayMessages = 10_000
	wsReplayBytes    = 16 << 20
)

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
	s.partial = missed.more
	if missed.more && s.t.streams() {
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

// missed is what a recovering connection is sent before live messages.
type missed struct {
	deliveries []*hub.Delivery
	// more reports that history holds more than was read: the connection
	// ends once this is written, so the client comes back for the rest.
	more bool
}

// readMissed reads what the client missed after mid, oldest first, each
// message once however many of the connection's channels hold it. A long
// poll gets one page: the next poll, from the last mid of the answer,
// continues. A WebSocket reads pages until it has caught up (see
// wsReplayMessages). Where history dropped messages after mid, the
// history-lost command is put in their place.
func (s *session) readMissed(ctx context.Context, mid message.ID) (missed, error) {
	var out missed
	seen := make(map[message.ID]struct{})
	after, size, lostSent := mid, 0, false
	budget := cmp.Or(s.srv.opt.ReplayPerConnection, wsReplayMessages)
	for {
		p, err := s.srv.broker.Recover(ctx, s.historyChannels(), after, s.srv.opt.Replay)
		if err != nil {
			return missed{}, err
		}
		var signal *hub.Delivery
		if !lostSent && !p.Lost.IsZero() && (!p.More || !p.Next.Less(p.Lost)) {
			lostSent = true
			if id, ok := lostMarkerID(p, after); ok {
				m := &message.Message{ID: id, Body: []byte(historyLostBody), Created: time.Now(),
					Sender: message.Sender{Type: message.SenderBackend}}
				signal = hub.NewDelivery(m, s.localChannel(p.LostChannel))
			}
		}
		for _, e := range p.Entries {
			if signal != nil && signal.Msg.ID.Less(e.Msg.ID) {
				out.deliveries = append(out.deliveries, signal)
				signal = nil
			}
			if _, dup := seen[e.Msg.ID]; dup {
				continue // a replay lists each message once
			}
			seen[e.Msg.ID] = struct{}{}
			d := hub.NewDelivery(e.Msg, s.localChannel(e.Channel))
			out.deliveries = append(out.deliveries, s.proto.replayed(d))
			size += len(e.Msg.Body)
		}
		if signal != nil {
			out.deliveries = append(out.deliveries, signal)
		}
		if !p.More {
			return out, nil
		}
		after = p.Next
		if !s.t.streams() || len(out.deliveries) >= budget || size >= wsReplayBytes {
			out.more = true
			return out, nil
		}
	}
}

// lostMarkerID picks the id of the history-lost command: the newest id in
// (after, p.Lost] that no entry of the page has. The client takes it as its
// mid, so it must be past the loss (or the next recovery would report it
// again) and must not be a message's (the clients drop a repeated mid).
// When every id up to p.Lost is in the page, whatever a channel dropped is
// still delivered through another, and nothing is lost.
func lostMarkerID(p broker.Page, after message.ID) (message.ID, bool) {
	held := make(map[message.ID]struct{}, len(p.Entries))
	for _, e := range p.Entries {
		held[e.Msg.ID] = struct{}{}
	}
	for id := p.Lost; after.Less(id); id = previousID(id) {
		if _, ok := held[id]; !ok {
			return id, true
		}
	}
	return message.ID{}, false
}

// previousID is the id just before id (not the zero id).
func previousID(id message.ID) message.ID {
	if id.Seq > 0 {
		return message.ID{Epoch: id.Epoch, Seq: id.Seq - 1}
	}
	if id.Epoch == 0 {
		return id
	}
	return message.ID{Epoch: id.Epoch - 1, Seq: 9_999_999_999_999_999}
}
