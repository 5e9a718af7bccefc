package realtime

import (
	"testing"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

// A client that reconnects with the mid of the newest message must not get
// that message again when the broker's dispatcher, lagging under load,
// delivers it to the new session after the (empty) replay, nor when it was
// delivered while the session was still recovering.
func TestRecoveryDropsWhatTheClientHas(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	ts.publish(t, `{"n":1}`, ch)
	entries, err := ts.broker.History(t.Context(), []channel.ID{ch}, message.ID{}, broker.HistoryLimit{PerChannel: 10, Total: 10})
	if err != nil || len(entries) != 1 {
		t.Fatalf("history: %v, %v", entries, err)
	}
	have := entries[0].Msg
	newerID, err := ts.broker.NewID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	newer := &message.Message{ID: newerID, Body: []byte(`{"n":2}`)}

	for _, during := range []bool{false, true} {
		sess := newSession(ts.rt, []channel.Element{{ID: channel.ID{0xfe}}}, formatText)
		sess.wake = make(chan struct{}, 1)
		if err := sess.subscribe(t.Context()); err != nil {
			t.Fatal(err)
		}
		if during {
			sess.Deliver(hub.NewDelivery(have, ch)) // queued while recovering
		}
		if err := sess.replay(t.Context(), have.ID, true); err != nil {
			t.Fatal(err)
		}
		if !during {
			sess.Deliver(hub.NewDelivery(have, ch)) // late, after the replay
		}
		sess.Deliver(hub.NewDelivery(newer, ch))
		q := sess.take()
		if len(q) != 1 || q[0].Msg != newer {
			var got []string
			for _, d := range q {
				got = append(got, string(d.Msg.Body))
			}
			t.Errorf("delivered during recovery %v: queue %v, want only the newer message", during, got)
		}
		sess.detach()
	}
}
