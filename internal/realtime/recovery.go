package realtime

import (
	"cmp"
	"context"
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
