// Package brokertest is the conformance suite every broker engine must pass:
// the same tests run against the embedded engine and the cluster one.
package brokertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// Factory returns a fresh, empty broker that delivers to d. It should
// register its own cleanup.
type Factory func(t *testing.T, d broker.Deliverer) broker.Broker

// Hooks are what the suite needs of an engine beyond a Factory.
type Hooks struct {
	// Capped returns a fresh, empty broker that stores at most perChannel
	// messages per channel.
	Capped func(t *testing.T, perChannel int) broker.Broker
	// ByteCapped returns a fresh, empty broker whose channels each store
	// at most channelBytes of messages, by the engine's own measure of a
	// message (its body plus less than 1 KiB of ids and fields).
	ByteCapped func(t *testing.T, channelBytes int64) broker.Broker
	// Outage cuts b's fan-out connection, calls away while it is cut, lets
	// it reconnect and, once the node listens again but before it has
	// caught up, calls during; it returns when the node has caught up.
	// An engine without such a connection (the embedded one) leaves it
	// nil: the suite then calls away and during in turn and expects the
	// same deliveries.
	Outage func(t *testing.T, b broker.Broker, away, during func())
}

// Recorder is a Deliverer that keeps what it is given.
type Recorder struct {
	mu   sync.Mutex
	msgs []*message.Message
	cond chan struct{}
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{cond: make(chan struct{}, 1)} }

// Deliver implements broker.Deliverer.
func (r *Recorder) Deliver(m *message.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.cond <- struct{}{}:
	default:
	}
}

// WaitFor returns everything delivered once a message with id has been, or
// fails t.
func (r *Recorder) WaitFor(t *testing.T, id message.ID) []*message.Message {
	t.Helper()
	return r.waitUntil(t, fmt.Sprintf("the delivery of %s", id), func(msgs []*message.Message) bool {
		return slices.ContainsFunc(msgs, func(m *message.Message) bool { return m.ID == id })
	})
}

// Wait returns once at least n messages were delivered, or fails t.
func (r *Recorder) Wait(t *testing.T, n int) []*message.Message {
	t.Helper()
	return r.waitUntil(t, fmt.Sprintf("%d deliveries", n), func(msgs []*message.Message) bool { return len(msgs) >= n })
}

// waitUntil returns a copy of the deliveries once done holds for them,
// checking after each delivery, or fails t after 10 s.
func (r *Recorder) waitUntil(t *testing.T, what string, done func([]*message.Message) bool) []*message.Message {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if done(r.msgs) {
			out := append([]*message.Message(nil), r.msgs...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		select {
		case <-r.cond:
		case <-deadline:
			t.Fatalf("waited for %s", what)
		}
	}
}

// NewChannel returns a random channel id.
func NewChannel(t *testing.T) channel.ID {
	t.Helper()
	var id channel.ID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

func publish(t *testing.T, b broker.Broker, expiry uint32, body string, chans ...channel.ID) *message.Message {
	t.Helper()
	m := &message.Message{Body: []byte(body), Expiry: expiry, Sender: message.Sender{Type: message.SenderBackend}}
	for _, c := range chans {
		m.Receivers = append(m.Receivers, message.Receiver{ID: c})
	}
	if err := b.Publish(context.Background(), m); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return m
}

// Attach makes the broker's node listen on chans: a cluster engine delivers
// only what its node has connections for.
func Attach(t *testing.T, b broker.Broker, chans ...channel.ID) {
	t.Helper()
	if err := b.Attach(context.Background(), chans); err != nil {
		t.Fatalf("attach: %v", err)
	}
}

// Run runs the suite.
func Run(t *testing.T, newBroker Factory, hooks Hooks) {
	ctx := context.Background()
	all := broker.HistoryLimit{PerChannel: 1000, Total: 1000}

	t.Run("IDsIncrease", func(t *testing.T) {
		b := newBroker(t, nil)
		a := NewChannel(t)
		var prev message.ID
		for i := range 50 {
			m := publish(t, b, 60, fmt.Sprintf(`{"n":%d}`, i), a)
			if !prev.Less(m.ID) {
				t.Fatalf("id %s not after %s", m.ID, prev)
			}
			if len(m.ID.String()) != message.IDLen {
				t.Fatalf("id %q is not %d digits", m.ID, message.IDLen)
			}
			prev = m.ID
		}
		id, err := b.NewID(ctx)
		if err != nil || !prev.Less(id) {
			t.Fatalf("NewID = %s, %v; want after %s", id, err, prev)
		}
	})

	t.Run("DeliversToDeliverer", func(t *testing.T) {
		rec := NewRecorder()
		b := newBroker(t, rec)
		a, c := NewChannel(t), NewChannel(t)
		Attach(t, b, a, c)
		m := publish(t, b, 60, `{"x":1}`, a, c)
		got := rec.Wait(t, 1)
		if got[0].ID != m.ID || string(got[0].Body) != `{"x":1}` || len(got[0].Receivers) != 2 {
			t.Fatalf("delivered %+v, want %+v", got[0], m)
		}
		if got[0].Created.IsZero() {
			t.Fatal("Created not set")
		}
	})

	t.Run("HistoryNewerThanMid", func(t *testing.T) {
		b := newBroker(t, nil)
		a, c, other := NewChannel(t), NewChannel(t), NewChannel(t)
		m1 := publish(t, b, 60, `1`, a)
		m2 := publish(t, b, 60, `2`, c)
		publish(t, b, 60, `x`, other)
		m3 := publish(t, b, 60, `3`, a, c)
		got, err := b.History(ctx, []channel.ID{a, c}, m1.ID, all)
		if err != nil {
			t.Fatal(err)
		}
		want := []broker.Entry{{Msg: m2, Channel: c}, {Msg: m3, Channel: a}, {Msg: m3, Channel: c}}
		if len(got) != len(want) {
			t.Fatalf("got %d entries, want %d: %v", len(got), len(want), got)
		}
		for i := range want {
			if got[i].Msg.ID != want[i].Msg.ID || got[i].Channel != want[i].Channel {
				t.Fatalf("entry %d = %s@%s, want %s@%s", i, got[i].Msg.ID, got[i].Channel, want[i].Msg.ID, want[i].Channel)
			}
		}
		got, _ = b.History(ctx, []channel.ID{a}, message.ID{}, all)
		if len(got) != 2 || got[0].Msg.ID != m1.ID || got[1].Msg.ID != m3.ID {
			t.Fatalf("history of a from the start = %v", got)
		}
		last, ok, err := b.LastID(ctx, []channel.ID{a, c})
		if err != nil || !ok || last != m3.ID {
			t.Fatalf("LastID = %s %v %v, want %s", last, ok, err, m3.ID)
		}
		if _, ok, _ := b.LastID(ctx, []channel.ID{NewChannel(t)}); ok {
			t.Fatal("LastID of an empty channel reported a message")
		}
	})

	t.Run("HistoryLimitKeepsOldest", func(t *testing.T) {
		b := newBroker(t, nil)
		a, c := NewChannel(t), NewChannel(t)
		var as, cs []*message.Message
		for i := range 5 {
			as = append(as, publish(t, b, 60, fmt.Sprint(i), a))
			cs = append(cs, publish(t, b, 60, fmt.Sprint(i), c))
		}
		p, err := b.Recover(ctx, []channel.ID{a, c}, message.ID{}, broker.HistoryLimit{PerChannel: 3, Total: 4})
		if err != nil {
			t.Fatal(err)
		}
		// Oldest first: a0 c0 a1 c1 of the oldest 3 per channel.
		want := []*message.Message{as[0], cs[0], as[1], cs[1]}
		if len(p.Entries) != len(want) || !p.More || p.Next != cs[1].ID {
			t.Fatalf("got %d entries (more %v, next %s), want %d, more, next %s", len(p.Entries), p.More, p.Next, len(want), cs[1].ID)
		}
		for i := range want {
			if p.Entries[i].Msg.ID != want[i].ID {
				t.Fatalf("entry %d = %s, want %s", i, p.Entries[i].Msg.ID, want[i].ID)
			}
		}
	})

	// A recovery far behind is read page by page, oldest first, until it
	// has everything: the per-read cap bounds one answer, never what can
	// be recovered (issue 12 #1).
	t.Run("RecoverPagesThroughTheWholeBacklog", func(t *testing.T) {
		b := newBroker(t, nil)
		a, c, other := NewChannel(t), NewChannel(t), NewChannel(t)
		marker := publish(t, b, 60, `"marker"`, a)
		var want []broker.Entry
		for i := range 250 {
			switch i % 5 {
			case 0: // to both: one entry per channel
				m := publish(t, b, 60, fmt.Sprint(i), a, c)
				want = append(want, broker.Entry{Msg: m, Channel: a}, broker.Entry{Msg: m, Channel: c})
			case 1:
				publish(t, b, 60, fmt.Sprint(i), other)
			case 2, 3:
				want = append(want, broker.Entry{Msg: publish(t, b, 60, fmt.Sprint(i), a), Channel: a})
			default:
				want = append(want, broker.Entry{Msg: publish(t, b, 60, fmt.Sprint(i), c), Channel: c})
			}
		}
		var got []broker.Entry
		after, pages := marker.ID, 0
		for {
			p, err := b.Recover(ctx, []channel.ID{a, c}, after, broker.HistoryLimit{PerChannel: 30, Total: 45})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(p.Entries) > 45 || !p.Lost.IsZero() {
				t.Fatalf("page %d: %d entries, lost %s", pages, len(p.Entries), p.Lost)
			}
			got = append(got, p.Entries...)
			if !p.More {
				break
			}
			if pages > 100 {
				t.Fatal("recovery does not end")
			}
			after = p.Next
		}
		if len(got) != len(want) {
			t.Fatalf("recovered %d entries in %d pages, want %d", len(got), pages, len(want))
		}
		for i := range want {
			if got[i].Msg.ID != want[i].Msg.ID || got[i].Channel != want[i].Channel {
				t.Fatalf("entry %d = %s@%s, want %s@%s", i, got[i].Msg.ID, got[i].Channel, want[i].Msg.ID, want[i].Channel)
			}
		}
	})

	// A channel that dropped messages to stay within its cap says so to a
	// reader whose mid is older than what it dropped, and to no other.
	t.Run("RecoverReportsTrimmedMessages", func(t *testing.T) {
		b := hooks.Capped(t, 3)
		a, c := NewChannel(t), NewChannel(t)
		marker := publish(t, b, 60, `"marker"`, a, c)
		var as []*message.Message
		for i := range 5 {
			as = append(as, publish(t, b, 60, fmt.Sprint(i), a))
		}
		cs := publish(t, b, 60, `"c"`, c)
		// a holds as[2..4]: the marker, as[0] and as[1] were dropped.
		p, err := b.Recover(ctx, []channel.ID{a, c}, marker.ID, broker.HistoryLimit{PerChannel: 100, Total: 100})
		if err != nil {
			t.Fatal(err)
		}
		if p.Lost != as[1].ID || p.LostChannel != a {
			t.Fatalf("lost = %s in %s, want %s in %s", p.Lost, p.LostChannel, as[1].ID, a)
		}
		if len(p.Entries) != 4 || p.Entries[0].Msg.ID != as[2].ID || p.Entries[3].Msg.ID != cs.ID {
			t.Fatalf("entries %v", p.Entries)
		}
		// From as[1] on nothing is missing, nor on c alone.
		for _, r := range []struct {
			chans []channel.ID
			after message.ID
		}{{[]channel.ID{a, c}, as[1].ID}, {[]channel.ID{c}, marker.ID}} {
			p, err := b.Recover(ctx, r.chans, r.after, broker.HistoryLimit{PerChannel: 100, Total: 100})
			if err != nil || !p.Lost.IsZero() {
				t.Fatalf("recover after %s: lost %s, %v; want nothing lost", r.after, p.Lost, err)
			}
		}
	})

	// A channel over its byte cap drops its oldest messages, says so to a
	// reader from before them, and leaves other channels alone.
	t.Run("ChannelByteCap", func(t *testing.T) {
		const body = 1024
		b := hooks.ByteCapped(t, 8*body)
		a, quiet := NewChannel(t), NewChannel(t)
		marker := publish(t, b, 60, `"marker"`, a, quiet)
		var as []*message.Message
		for range 20 {
			as = append(as, publish(t, b, 60, `"`+strings.Repeat("x", body-2)+`"`, a))
		}
		p, err := b.Recover(ctx, []channel.ID{a, quiet}, marker.ID, broker.HistoryLimit{PerChannel: 100, Total: 100})
		if err != nil {
			t.Fatal(err)
		}
		// Each message is its body plus under 1 KiB, so 8 KiB keeps 4 to 8.
		kept := len(p.Entries)
		if kept < 4 || kept > 8 {
			t.Fatalf("kept %d messages of %d bytes under a cap of %d; want 4 to 8", kept, body, 8*body)
		}
		for i, e := range p.Entries {
			if want := as[len(as)-kept+i]; e.Msg.ID != want.ID || e.Channel != a {
				t.Fatalf("entry %d is %s in %s; want the newest %d of a in order", i, e.Msg.ID, e.Channel, kept)
			}
		}
		if p.Lost != as[len(as)-kept-1].ID || p.LostChannel != a {
			t.Fatalf("lost %s in %s; want %s in a", p.Lost, p.LostChannel, as[len(as)-kept-1].ID)
		}
		if got, err := b.History(ctx, []channel.ID{quiet}, message.ID{}, broker.HistoryLimit{PerChannel: 100, Total: 100}); err != nil || len(got) != 1 {
			t.Fatalf("the quiet channel holds %d messages (%v); want its one", len(got), err)
		}
		// The cap keeps holding as the channel goes on: what was dropped
		// was counted out.
		for range 20 {
			as = append(as, publish(t, b, 60, `"`+strings.Repeat("y", body-2)+`"`, a))
		}
		p, err = b.Recover(ctx, []channel.ID{a}, marker.ID, broker.HistoryLimit{PerChannel: 100, Total: 100})
		if err != nil || len(p.Entries) != kept || p.Entries[kept-1].Msg.ID != as[len(as)-1].ID {
			t.Fatalf("after 20 more: %d entries (%v); want the newest %d", len(p.Entries), err, kept)
		}
	})

	// A message to several channels is one entry per channel, and a page
	// never splits them: the next page starts after its id.
	t.Run("RecoverKeepsAMessagesEntriesTogether", func(t *testing.T) {
		b := newBroker(t, nil)
		a, c, d := NewChannel(t), NewChannel(t), NewChannel(t)
		m1 := publish(t, b, 60, `1`, a)
		m2 := publish(t, b, 60, `2`, a, c, d)
		m3 := publish(t, b, 60, `3`, c)
		p, err := b.Recover(ctx, []channel.ID{a, c, d}, message.ID{}, broker.HistoryLimit{PerChannel: 10, Total: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) != 1 || p.Entries[0].Msg.ID != m1.ID || !p.More {
			t.Fatalf("first page %v more %v; want m1 alone", p.Entries, p.More)
		}
		p, _ = b.Recover(ctx, []channel.ID{a, c, d}, p.Next, broker.HistoryLimit{PerChannel: 10, Total: 2})
		if len(p.Entries) != 3 || p.Entries[2].Msg.ID != m2.ID || !p.More {
			t.Fatalf("second page %v more %v; want m2's three entries", p.Entries, p.More)
		}
		p, _ = b.Recover(ctx, []channel.ID{a, c, d}, p.Next, broker.HistoryLimit{PerChannel: 10, Total: 2})
		if len(p.Entries) != 1 || p.Entries[0].Msg.ID != m3.ID || p.More {
			t.Fatalf("last page %v more %v; want m3 and the end", p.Entries, p.More)
		}
	})

	// A node that catches up after losing its fan-out connection hands
	// every message to its Deliverer once, in id order: the catch-up reads
	// a message to two of its channels twice, and a message that arrives
	// while it catches up is both held and read (issue 18).
	t.Run("CatchUpDeliversEachMessageOnce", func(t *testing.T) {
		rec := NewRecorder()
		b := newBroker(t, rec)
		a, c := NewChannel(t), NewChannel(t)
		Attach(t, b, a, c)
		first := publish(t, b, 60, `"first"`, a)
		rec.WaitFor(t, first.ID)
		var away, during *message.Message
		awayFn := func() { away = publish(t, b, 60, `"away"`, a, c) }
		duringFn := func() { during = publish(t, b, 60, `"during"`, a, c) }
		if hooks.Outage != nil {
			hooks.Outage(t, b, awayFn, duringFn)
		} else {
			awayFn()
			duringFn()
		}
		// The sentinel: once it is delivered, anything delivered twice
		// before it has been too.
		last := publish(t, b, 60, `"last"`, c)
		got := rec.WaitFor(t, last.ID)
		want := []*message.Message{first, away, during, last}
		if len(got) != len(want) {
			t.Fatalf("delivered %s; want %s", idList(got), idList(want))
		}
		for i := range want {
			if got[i].ID != want[i].ID {
				t.Fatalf("delivered %s; want %s", idList(got), idList(want))
			}
		}
	})

	t.Run("ExpiryZeroIsLiveOnly", func(t *testing.T) {
		rec := NewRecorder()
		b := newBroker(t, rec)
		a := NewChannel(t)
		Attach(t, b, a)
		publish(t, b, 0, `{}`, a)
		rec.Wait(t, 1)
		got, err := b.History(ctx, []channel.ID{a}, message.ID{}, all)
		if err != nil || len(got) != 0 {
			t.Fatalf("history = %v, %v; want nothing stored", got, err)
		}
	})

	t.Run("Presence", func(t *testing.T) {
		b := newBroker(t, nil)
		a, c := NewChannel(t), NewChannel(t)
		if err := b.Attach(ctx, []channel.ID{a, c}); err != nil {
			t.Fatal(err)
		}
		if err := b.Attach(ctx, []channel.ID{a}); err != nil {
			t.Fatal(err)
		}
		n, err := b.Online(ctx, []channel.ID{a, c, NewChannel(t)})
		if err != nil || n[0] != 2 || n[1] != 1 || n[2] != 0 {
			t.Fatalf("Online = %v, %v; want [2 1 0]", n, err)
		}
		if err := b.Detach(ctx, []channel.ID{a, c}); err != nil {
			t.Fatal(err)
		}
		n, _ = b.Online(ctx, []channel.ID{a, c})
		if n[0] != 1 || n[1] != 0 {
			t.Fatalf("after detach Online = %v; want [1 0]", n)
		}
	})

	t.Run("VersionFiveFieldsSurvive", func(t *testing.T) {
		rec := NewRecorder()
		b := newBroker(t, rec)
		a, u := NewChannel(t), channel.User("tenant", 7)
		m := &message.Message{
			Body: []byte(`{"module_id":"im","command":"x","params":{}}`), Expiry: 60,
			Receivers:  []message.Receiver{{ID: a}, {ID: u}},
			Sender:     message.Sender{Type: message.SenderClient, UserID: 42},
			UserParams: map[channel.ID][]byte{u: []byte(`{"name":"Ann"}`)},
			Dictionary: []byte(`{"k":"v"}`),
		}
		Attach(t, b, a, u)
		if err := b.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
		check := func(where string, got *message.Message) {
			t.Helper()
			if got.Sender.UserID != 42 || got.Sender.Type != message.SenderClient ||
				string(got.UserParams[u]) != `{"name":"Ann"}` || len(got.UserParams) != 1 ||
				string(got.Dictionary) != `{"k":"v"}` {
				t.Fatalf("%s: sender %+v, user params %q, dictionary %q", where, got.Sender, got.UserParams, got.Dictionary)
			}
		}
		check("delivered", rec.Wait(t, 1)[0])
		hist, err := b.History(ctx, []channel.ID{u}, message.ID{}, all)
		if err != nil || len(hist) != 1 {
			t.Fatalf("History = %d entries, %v; want 1", len(hist), err)
		}
		check("history", hist[0].Msg)
	})

	t.Run("LastSeen", func(t *testing.T) {
		b := newBroker(t, nil)
		u1, u2, never := channel.User("t", 1), channel.User("t", 2), channel.User("t", 3)
		got, err := b.LastSeen(ctx, []channel.ID{u1})
		if err != nil || len(got) != 0 {
			t.Fatalf("LastSeen before any record = %v, %v; want empty", got, err)
		}
		t1 := time.Unix(1_700_000_000, 600_000_000)
		t2 := time.Unix(1_700_000_100, 0)
		if err := b.SetLastSeen(ctx, map[channel.ID]time.Time{u1: t1, u2: t2}); err != nil {
			t.Fatal(err)
		}
		got, err = b.LastSeen(ctx, []channel.ID{u1, u2, never})
		if err != nil || len(got) != 2 || got[u1].Unix() != t1.Unix() || got[u2].Unix() != t2.Unix() {
			t.Fatalf("LastSeen = %v, %v; want u1 at %d, u2 at %d, nothing for the third", got, err, t1.Unix(), t2.Unix())
		}
		// A later record replaces the earlier one, even if it is older:
		// the backend's updateUsersLastSeen is authoritative.
		t3 := time.Unix(1_600_000_000, 0)
		if err := b.SetLastSeen(ctx, map[channel.ID]time.Time{u2: t3}); err != nil {
			t.Fatal(err)
		}
		got, _ = b.LastSeen(ctx, []channel.ID{u1, u2})
		if got[u2].Unix() != t3.Unix() || got[u1].Unix() != t1.Unix() {
			t.Fatalf("after replacing u2: %v", got)
		}
		if got, err := b.LastSeen(ctx, nil); err != nil || len(got) != 0 {
			t.Fatalf("LastSeen(nil) = %v, %v", got, err)
		}
	})

	t.Run("ConcurrentPublishersDeliverInIDOrder", func(t *testing.T) {
		rec := NewRecorder()
		b := newBroker(t, rec)
		a := NewChannel(t)
		Attach(t, b, a)
		const writers, each = 8, 50
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					m := &message.Message{Body: []byte(fmt.Sprintf(`[%d,%d]`, w, i)), Expiry: 60,
						Receivers: []message.Receiver{{ID: a}}}
					if err := b.Publish(ctx, m); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		got := rec.Wait(t, writers*each)
		for i := 1; i < len(got); i++ {
			if !got[i-1].ID.Less(got[i].ID) {
				t.Fatalf("delivery %d (%s) not after %s", i, got[i].ID, got[i-1].ID)
			}
		}
		hist, _ := b.History(ctx, []channel.ID{a}, message.ID{}, broker.HistoryLimit{PerChannel: 1000, Total: 1000})
		if len(hist) != writers*each {
			t.Fatalf("history has %d, want %d", len(hist), writers*each)
		}
	})
}

func idList(ms []*message.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID.String()
	}
	return out
}
