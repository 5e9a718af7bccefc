package memory

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/brokertest"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

func open(t *testing.T, opt Options, d broker.Deliverer) *Broker {
	t.Helper()
	if opt.HistoryPerChannel == 0 {
		opt.HistoryPerChannel = 1000
	}
	b, err := New(opt, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, d broker.Deliverer) broker.Broker {
		b := open(t, Options{}, d)
		t.Cleanup(func() { b.Close(context.Background()) })
		return b
	}, brokertest.Hooks{
		Capped: func(t *testing.T, perChannel int) broker.Broker {
			b := open(t, Options{HistoryPerChannel: perChannel}, nil)
			t.Cleanup(func() { b.Close(context.Background()) })
			return b
		},
		ByteCapped: func(t *testing.T, channelBytes int64) broker.Broker {
			b := open(t, Options{ChannelMaxBytes: channelBytes}, nil)
			t.Cleanup(func() { b.Close(context.Background()) })
			return b
		},
	})
}

// clock is a settable time source.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func publish(t *testing.T, b *Broker, expiry uint32, chans ...channel.ID) *message.Message {
	t.Helper()
	m := &message.Message{Body: []byte(`{}`), Expiry: expiry}
	for _, c := range chans {
		m.Receivers = append(m.Receivers, message.Receiver{ID: c})
	}
	if err := b.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

var all = broker.HistoryLimit{PerChannel: 1000, Total: 1000}

func TestPerMessageExpiry(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	b := open(t, Options{Now: clk.Now}, nil)
	defer b.Close(context.Background())
	a := brokertest.NewChannel(t)
	short := publish(t, b, 10, a)
	long := publish(t, b, 100, a)

	clk.now = clk.now.Add(10 * time.Second)
	got, _ := b.History(context.Background(), []channel.ID{a}, message.ID{}, all)
	if len(got) != 1 || got[0].Msg.ID != long.ID {
		t.Fatalf("after 10 s history = %v; want only %s (not %s)", got, long.ID, short.ID)
	}
	b.Sweep()
	if s := b.Stats(); s.Messages != 1 {
		t.Fatalf("after sweep %d stored, want 1", s.Messages)
	}
	clk.now = clk.now.Add(90 * time.Second)
	b.Sweep()
	if s := b.Stats(); s.Messages != 0 || s.Channels != 0 {
		t.Fatalf("after everything expired: %+v", s)
	}
	if _, ok, _ := b.LastID(context.Background(), []channel.ID{a}); ok {
		t.Fatal("LastID reports an expired message")
	}
}

func TestHistoryPerChannelCap(t *testing.T) {
	b := open(t, Options{HistoryPerChannel: 3}, nil)
	defer b.Close(context.Background())
	a := brokertest.NewChannel(t)
	var ms []*message.Message
	for range 5 {
		ms = append(ms, publish(t, b, 60, a))
	}
	got, _ := b.History(context.Background(), []channel.ID{a}, message.ID{}, all)
	if len(got) != 3 || got[0].Msg.ID != ms[2].ID || got[2].Msg.ID != ms[4].ID {
		t.Fatalf("history = %v; want the last 3", got)
	}
}

func TestSnapshotRestoresHistoryAndContinuesIDs(t *testing.T) {
	dir := t.TempDir()
	b := open(t, Options{DataDir: dir}, nil)
	a, c := brokertest.NewChannel(t), brokertest.NewChannel(t)
	m1 := publish(t, b, 3600, a, c)
	m2 := publish(t, b, 3600, c)
	publish(t, b, 0, a) // live only: not in the snapshot
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	b2 := open(t, Options{DataDir: dir}, nil)
	defer b2.Close(context.Background())
	got, err := b2.History(context.Background(), []channel.ID{a, c}, message.ID{}, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Msg.ID != m1.ID || got[2].Msg.ID != m2.ID {
		t.Fatalf("restored history = %v", got)
	}
	if string(got[0].Msg.Body) != `{}` || got[0].Msg.Expiry != 3600 || !got[0].Msg.Created.Equal(m1.Created) {
		t.Fatalf("restored message differs: %+v vs %+v", got[0].Msg, m1)
	}
	// Both channels share one restored message.
	if got[0].Msg != got[1].Msg {
		t.Fatal("a message in two channels was restored twice")
	}
	next := publish(t, b2, 60, a)
	if next.ID.Epoch != m1.ID.Epoch || !m2.ID.Less(next.ID) {
		t.Fatalf("after a clean restart id %s does not continue %s", next.ID, m2.ID)
	}
}

func TestCrashTakesNewEpoch(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	b := open(t, Options{DataDir: dir, Now: clk.Now}, nil)
	a := brokertest.NewChannel(t)
	before := publish(t, b, 60, a)
	// No Close: the process "crashed". Even with the clock not moving, the
	// next start must hand out larger ids.
	b2 := open(t, Options{DataDir: dir, Now: clk.Now}, nil)
	defer b2.Close(context.Background())
	after := publish(t, b2, 60, a)
	if !before.ID.Less(after.ID) || after.ID.Epoch <= before.ID.Epoch {
		t.Fatalf("after a crash id %s is not in a later epoch than %s", after.ID, before.ID)
	}
	b.Close(context.Background())
}

func TestCorruptSnapshotIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, snapshotFile), []byte("not gob"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{DataDir: dir, HistoryPerChannel: 10}, nil); err == nil {
		t.Fatal("a corrupt snapshot was accepted")
	}
}

func TestPublishAfterCloseFails(t *testing.T) {
	b := open(t, Options{}, nil)
	b.Close(context.Background())
	m := &message.Message{Body: []byte(`{}`), Expiry: 1, Receivers: []message.Receiver{{ID: brokertest.NewChannel(t)}}}
	if err := b.Publish(context.Background(), m); err == nil {
		t.Fatal("publish after close succeeded")
	}
}

func TestLiveOnlyMessagesAreKeptForTheRetentionWindow(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	b := open(t, Options{Now: clk.Now, LiveRetention: 30 * time.Second}, nil)
	defer b.Close(context.Background())
	a := brokertest.NewChannel(t)
	live := publish(t, b, 0, a)
	got, _ := b.History(context.Background(), []channel.ID{a}, message.ID{}, all)
	if len(got) != 1 || got[0].Msg.ID != live.ID || got[0].Msg.Expiry != 0 {
		t.Fatalf("within the window history = %v", got)
	}
	clk.now = clk.now.Add(30 * time.Second)
	if got, _ := b.History(context.Background(), []channel.ID{a}, message.ID{}, all); len(got) != 0 {
		t.Fatalf("after the window history = %v", got)
	}
}

func TestMaxStoredDropsTheOldestOfAllChannels(t *testing.T) {
	dir := t.TempDir()
	b := open(t, Options{DataDir: dir, HistoryPerChannel: 3, MaxStored: 4}, nil)
	a, c := brokertest.NewChannel(t), brokertest.NewChannel(t)
	a1 := publish(t, b, 60, a)
	c1 := publish(t, b, 60, c)
	a2 := publish(t, b, 60, a)
	a3 := publish(t, b, 60, a)
	a4 := publish(t, b, 60, a) // the per-channel cap drops a1
	c2 := publish(t, b, 60, c) // now 5 entries: the global cap drops c1
	if s := b.Stats(); s.Messages != 4 {
		t.Fatalf("%d stored, want 4", s.Messages)
	}
	got, _ := b.History(context.Background(), []channel.ID{a, c}, message.ID{}, all)
	want := []message.ID{a2.ID, a3.ID, a4.ID, c2.ID}
	if len(got) != len(want) {
		t.Fatalf("history %v", got)
	}
	for i, e := range got {
		if e.Msg.ID != want[i] {
			t.Fatalf("entry %d = %s, want %s (a1 %s, c1 %s)", i, e.Msg.ID, want[i], a1.ID, c1.ID)
		}
	}
	b.Sweep()
	if s := b.Stats(); s.Messages != 4 || len(b.order) != 4 {
		t.Fatalf("after sweep: %+v, order %d", s, len(b.order))
	}
	// The cap holds across a restart with a smaller limit.
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b2 := open(t, Options{DataDir: dir, HistoryPerChannel: 3, MaxStored: 2}, nil)
	defer b2.Close(context.Background())
	got, _ = b2.History(context.Background(), []channel.ID{a, c}, message.ID{}, all)
	if len(got) != 2 || got[0].Msg.ID != a4.ID || got[1].Msg.ID != c2.ID {
		t.Fatalf("restored with a cap of 2: %v", got)
	}
}

func TestSnapshotKeepsVersionFiveFieldsAndLastSeen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b := open(t, Options{DataDir: dir}, nil)
	u := channel.User("tenant", 5)
	m := &message.Message{Body: []byte(`{}`), Expiry: 3600, Receivers: []message.Receiver{{ID: u}},
		Sender:     message.Sender{Type: message.SenderClient, UserID: 9},
		UserParams: map[channel.ID][]byte{u: []byte(`{"a":1}`)}, Dictionary: []byte(`{"d":2}`)}
	if err := b.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	seen := time.Unix(1_700_000_000, 0)
	if err := b.SetLastSeen(ctx, map[channel.ID]time.Time{u: seen}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b2 := open(t, Options{DataDir: dir}, nil)
	defer b2.Close(ctx)
	got, err := b2.History(ctx, []channel.ID{u}, message.ID{}, all)
	if err != nil || len(got) != 1 {
		t.Fatalf("History = %v, %v", got, err)
	}
	r := got[0].Msg
	if r.Sender.UserID != 9 || string(r.UserParams[u]) != `{"a":1}` || string(r.Dictionary) != `{"d":2}` {
		t.Fatalf("restored %+v", r)
	}
	ls, err := b2.LastSeen(ctx, []channel.ID{u})
	if err != nil || !ls[u].Equal(seen) {
		t.Fatalf("restored last seen = %v, %v; want %v", ls, err, seen)
	}
}
