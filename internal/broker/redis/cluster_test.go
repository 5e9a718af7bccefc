package redis

import (
	"context"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/brokertest"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/redistest"
)

func publishTo(t *testing.T, b broker.Broker, body string, chans ...channel.ID) *message.Message {
	t.Helper()
	m := &message.Message{Body: []byte(body), Expiry: 60, Sender: message.Sender{Type: message.SenderBackend}}
	for _, c := range chans {
		m.Receivers = append(m.Receivers, message.Receiver{ID: c})
	}
	if err := b.Publish(context.Background(), m); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return m
}

// waitFor polls cond, which reads state that has no signal of its own (a
// node's view of its connection), until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCrossNodeDeliveryByInterest(t *testing.T) {
	prefix := randomPrefix(t)
	recA, recB := brokertest.NewRecorder(), brokertest.NewRecorder()
	a := node(t, shared.URL(), prefix, recA, nil)
	b := node(t, shared.URL(), prefix, recB, nil)
	listened, other, both := brokertest.NewChannel(t), brokertest.NewChannel(t), brokertest.NewChannel(t)
	brokertest.Attach(t, a, listened, both)
	publishTo(t, b, `"not for a"`, other)
	twice := publishTo(t, b, `"to two channels a listens on"`, listened, both)
	last := publishTo(t, b, `"last"`, listened)

	// Messages reach a node in id order, so once the last one is there,
	// everything before it that was going to arrive has.
	got := recA.Wait(t, 2)
	if len(got) != 2 || got[0].ID != twice.ID || got[1].ID != last.ID {
		t.Fatalf("node a got %v; want %s once and then %s", ids(got), twice.ID, last.ID)
	}
	if string(got[0].Body) != `"to two channels a listens on"` || len(got[0].Receivers) != 2 {
		t.Fatalf("node a got %+v", got[0])
	}
	// The metrics: a received two messages from Redis; b waited for three
	// publish round trips (and its heartbeat's).
	if st := a.Stats(); st.Received != 2 || !st.Healthy {
		t.Errorf("node a stats %+v; want 2 received, healthy", st)
	}
	if st := b.Stats(); st.Received != 0 || st.RoundTrip.Count < 3 || st.RoundTrip.Sum <= 0 {
		t.Errorf("node b stats %+v; want nothing received, at least 3 timed round trips", st)
	}
	// Node b, the publisher, listens on nothing and receives nothing: a
	// message published after it attaches is its first delivery.
	brokertest.Attach(t, b, other)
	mine := publishTo(t, a, `"for b"`, other)
	if got := recB.Wait(t, 1); got[0].ID != mine.ID {
		t.Fatalf("node b got %v first; want only %s", ids(got), mine.ID)
	}
}

func TestDetachStopsDelivery(t *testing.T) {
	ctx := context.Background()
	prefix := randomPrefix(t)
	rec := brokertest.NewRecorder()
	a := node(t, shared.URL(), prefix, rec, nil)
	b := node(t, shared.URL(), prefix, nil, nil)
	gone, kept := brokertest.NewChannel(t), brokertest.NewChannel(t)
	brokertest.Attach(t, a, gone, kept)
	if err := a.Detach(ctx, []channel.ID{gone}); err != nil {
		t.Fatal(err)
	}
	// Attach again for kept only after the detach's UNSUBSCRIBE has been
	// sent: a second Attach of a new channel waits for a round.
	sync := brokertest.NewChannel(t)
	brokertest.Attach(t, a, sync)
	publishTo(t, b, `"gone"`, gone)
	last := publishTo(t, b, `"kept"`, kept)
	if got := rec.Wait(t, 1); got[0].ID != last.ID {
		t.Fatalf("got %v; want only %s", ids(got), last.ID)
	}
}

func TestPresenceAcrossNodes(t *testing.T) {
	ctx := context.Background()
	prefix := randomPrefix(t)
	var clock time.Time
	a := node(t, shared.URL(), prefix, nil, nil)
	b := node(t, shared.URL(), prefix, nil, nil)
	reader := node(t, shared.URL(), prefix, nil, func(o *Options) {
		o.Now = func() time.Time {
			if clock.IsZero() {
				return time.Now()
			}
			return clock
		}
	})
	ch := brokertest.NewChannel(t)
	for _, n := range []*Broker{a, a, b} {
		brokertest.Attach(t, n, ch)
	}
	if n, err := reader.Online(ctx, []channel.ID{ch}); err != nil || n[0] != 3 {
		t.Fatalf("Online = %v, %v; want 3", n, err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := reader.Online(ctx, []channel.ID{ch}); n[0] != 2 {
		t.Fatalf("after node b closed Online = %v; want 2", n)
	}
	// A node that stops heartbeating (crashed) stops counting after three
	// heartbeats.
	clock = time.Now().Add(4 * time.Second)
	if n, _ := reader.Online(ctx, []channel.ID{ch}); n[0] != 0 {
		t.Fatalf("with node a silent for 4 heartbeats Online = %v; want 0", n)
	}
}

func TestIDsNeverGoBackWhenRedisLosesData(t *testing.T) {
	srv := redistest.Start(t)
	b := node(t, srv.URL(), "", nil, nil)
	ch := brokertest.NewChannel(t)
	before := publishTo(t, b, `1`, ch)
	if _, err := srv.Do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	after := publishTo(t, b, `2`, ch)
	if !before.ID.Less(after.ID) {
		t.Fatalf("after FLUSHALL id %s is not after %s", after.ID, before.ID)
	}
}

func TestResubscribesAndCatchesUpAfterConnectionLoss(t *testing.T) {
	prefix := randomPrefix(t)
	rec := brokertest.NewRecorder()
	// Node a waits before reconnecting, so that a publish lands while it is
	// certainly not subscribed.
	a := node(t, shared.URL(), prefix, rec, func(o *Options) { o.ReconnectMin, o.ReconnectMax = 300*time.Millisecond, 300*time.Millisecond })
	b := node(t, shared.URL(), prefix, nil, nil)
	ch := brokertest.NewChannel(t)
	brokertest.Attach(t, a, ch)
	first := publishTo(t, b, `"before"`, ch)
	rec.Wait(t, 1)
	if _, err := shared.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node a to notice its subscription is gone", func() bool { return a.Healthy() != nil })
	if st := a.Stats(); st.Healthy {
		t.Error("stats say healthy while the subscription is down")
	}
	missed := publishTo(t, b, `"while a was away"`, ch)
	waitFor(t, "node a to reconnect", func() bool { return a.Healthy() == nil })
	if st := a.Stats(); st.Reconnects != 1 || !st.Healthy {
		t.Errorf("stats after the reconnect %+v; want 1 reconnect, healthy", st)
	}
	live := publishTo(t, b, `"after"`, ch)
	got := rec.Wait(t, 3)
	if len(got) != 3 || got[0].ID != first.ID || got[1].ID != missed.ID || got[2].ID != live.ID {
		t.Fatalf("got %v; want %s %s %s", ids(got), first.ID, missed.ID, live.ID)
	}
}

func TestRedisRestart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rec := brokertest.NewRecorder()
	a := node(t, srv.URL(), "", rec, nil)
	b := node(t, srv.URL(), "", nil, nil)
	ch := brokertest.NewChannel(t)
	brokertest.Attach(t, a, ch)
	first := publishTo(t, b, `1`, ch)
	rec.Wait(t, 1)

	srv.Stop()
	waitFor(t, "node a to report Redis gone", func() bool { return a.Healthy() != nil })
	m := &message.Message{Body: []byte(`"refused"`), Expiry: 60, Receivers: []message.Receiver{{ID: ch}}}
	if err := b.Publish(ctx, m); err == nil {
		t.Fatal("a publish with Redis down was acknowledged")
	}
	if err := a.Attach(ctx, []channel.ID{brokertest.NewChannel(t)}); err == nil {
		t.Fatal("attach of a new channel with Redis down succeeded")
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node a to reconnect", func() bool { return a.Healthy() == nil })
	second := publishTo(t, b, `2`, ch)
	got := rec.Wait(t, 2)
	if got[1].ID != second.ID || !first.ID.Less(second.ID) {
		t.Fatalf("after the restart got %v; want %s then %s", ids(got), first.ID, second.ID)
	}
	// History survived (the test Redis persists) and is readable.
	hist, err := a.History(ctx, []channel.ID{ch}, message.ID{}, broker.HistoryLimit{PerChannel: 10, Total: 10})
	if err != nil || len(hist) != 2 {
		t.Fatalf("history after restart = %d entries, %v; want 2", len(hist), err)
	}
}

func ids(ms []*message.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID.String()
	}
	return out
}

// TestRedisClusterConformance runs the suite on a three-node Redis Cluster:
// every key shares one hash tag, so the scripts stay within one slot.
func TestRedisClusterConformance(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	brokertest.Run(t, func(t *testing.T, d broker.Deliverer) broker.Broker {
		return node(t, rc.URL(), randomPrefix(t), d, nil)
	}, hooks(rc.URL(), rc.Nodes...))
	// Two nodes on the cluster, one publishing, one listening.
	rec := brokertest.NewRecorder()
	prefix := randomPrefix(t)
	a := node(t, rc.URL(), prefix, rec, nil)
	b := node(t, rc.URL(), prefix, nil, nil)
	ch := brokertest.NewChannel(t)
	brokertest.Attach(t, a, ch)
	m := publishTo(t, b, `"across"`, ch)
	if got := rec.Wait(t, 1); got[0].ID != m.ID {
		t.Fatalf("got %v, want %s", ids(got), m.ID)
	}
}

// TestSentinel reaches the primary through a Redis Sentinel.
func TestSentinel(t *testing.T) {
	primary := redistest.Start(t)
	url := redistest.StartSentinel(t, primary)
	rec := brokertest.NewRecorder()
	a := node(t, url, "", rec, nil)
	ch := brokertest.NewChannel(t)
	brokertest.Attach(t, a, ch)
	m := publishTo(t, a, `"through sentinel"`, ch)
	if got := rec.Wait(t, 1); got[0].ID != m.ID {
		t.Fatalf("got %v, want %s", ids(got), m.ID)
	}
	if n, err := primary.Do("EXISTS", "{pushpull}:m:"+m.ID.String()); err != nil || n != ":1" {
		t.Fatalf("message not stored on the primary: %q %v", n, err)
	}
}

// TestPresenceRestoredAfterRedisLosesData: the heartbeat rewrites the
// node's connection counts, so presence comes back after Redis lost it.
func TestPresenceRestoredAfterRedisLosesData(t *testing.T) {
	srv := redistest.Start(t)
	a := node(t, srv.URL(), "", nil, func(o *Options) { o.Heartbeat = 100 * time.Millisecond })
	ch := brokertest.NewChannel(t)
	brokertest.Attach(t, a, ch, ch)
	if _, err := srv.Do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "presence to be rewritten", func() bool {
		n, err := a.Online(context.Background(), []channel.ID{ch})
		return err == nil && n[0] == 2
	})
}

// TestCatchUpBeforeAnyDelivery: a node whose subscription breaks before it
// has delivered anything still recovers what was published meanwhile, and
// only that: messages from before it listened are not handed out.
func TestCatchUpBeforeAnyDelivery(t *testing.T) {
	prefix := randomPrefix(t)
	b := node(t, shared.URL(), prefix, nil, nil)
	ch := brokertest.NewChannel(t)
	publishTo(t, b, `"before a listened"`, ch)
	rec := brokertest.NewRecorder()
	a := node(t, shared.URL(), prefix, rec, func(o *Options) { o.ReconnectMin, o.ReconnectMax = 300*time.Millisecond, 300*time.Millisecond })
	brokertest.Attach(t, a, ch)
	if _, err := shared.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node a to notice its subscription is gone", func() bool { return a.Healthy() != nil })
	missed := publishTo(t, b, `"while a was away"`, ch)
	waitFor(t, "node a to reconnect", func() bool { return a.Healthy() == nil })
	live := publishTo(t, b, `"after"`, ch)
	got := rec.Wait(t, 2)
	if len(got) != 2 || got[0].ID != missed.ID || got[1].ID != live.ID {
		t.Fatalf("got %v; want %s then %s", ids(got), missed.ID, live.ID)
	}
}
