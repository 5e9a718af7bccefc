package memory

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/brokertest"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

func publishBody(t *testing.T, b *Broker, body string, chans ...channel.ID) *message.Message {
	t.Helper()
	m := &message.Message{Body: []byte(body), Expiry: 60}
	for _, c := range chans {
		m.Receivers = append(m.Receivers, message.Receiver{ID: c})
	}
	if err := b.Publish(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// History is bounded in bytes across channels and per channel, the oldest
// going first, and a reader from before what was dropped is told (issue
// 11 #4).
func TestHistoryBoundedInBytes(t *testing.T) {
	ctx := context.Background()
	kib := strings.Repeat("x", 1024)
	one := messageSize(&message.Message{Body: []byte(kib), Receivers: make([]message.Receiver, 1)})

	t.Run("all channels", func(t *testing.T) {
		b := open(t, Options{MaxBytes: 10 * one}, nil)
		defer b.Close(ctx)
		var ms []*message.Message
		for range 30 {
			ms = append(ms, publishBody(t, b, kib, brokertest.NewChannel(t)))
		}
		if s := b.Stats(); s.Messages != 10 || s.Bytes > 10*one {
			t.Fatalf("stats %+v; want the 10 newest within %d bytes", s, 10*one)
		}
		got, _ := b.History(ctx, []channel.ID{ms[19].Receivers[0].ID, ms[20].Receivers[0].ID}, message.ID{}, all)
		if len(got) != 1 || got[0].Msg.ID != ms[20].ID {
			t.Fatalf("history of the 20th and 21st: %v; want the 21st only", got)
		}
	})

	t.Run("one message to many channels counts once", func(t *testing.T) {
		b := open(t, Options{MaxBytes: 10 * one}, nil)
		defer b.Close(ctx)
		chans := make([]channel.ID, 50)
		for i := range chans {
			chans[i] = brokertest.NewChannel(t)
		}
		publishBody(t, b, kib, chans...)
		if s := b.Stats(); s.Messages != 50 {
			t.Fatalf("stats %+v; want all 50 entries of one message kept", s)
		}
	})

	t.Run("one channel", func(t *testing.T) {
		b := open(t, Options{ChannelMaxBytes: 4 * one}, nil)
		defer b.Close(ctx)
		a, quiet := brokertest.NewChannel(t), brokertest.NewChannel(t)
		marker := publishBody(t, b, `{}`, a, quiet)
		var ms []*message.Message
		for range 10 {
			ms = append(ms, publishBody(t, b, kib, a))
		}
		p, err := b.Recover(ctx, []channel.ID{a, quiet}, marker.ID, all)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) != 4 || p.Entries[0].Msg.ID != ms[6].ID || p.Lost != ms[5].ID || p.LostChannel != a {
			t.Fatalf("%d entries from %v, lost %s in %s; want ms[6:] and ms[5] lost in a", len(p.Entries), p.Entries, p.Lost, p.LostChannel)
		}
		if got, _ := b.History(ctx, []channel.ID{quiet}, message.ID{}, all); len(got) != 1 {
			t.Fatalf("the quiet channel lost its message: %v", got)
		}
	})
}

func TestPublishRefusesPayloadOverTheMaximum(t *testing.T) {
	b := open(t, Options{MaxPayload: 100}, nil)
	defer b.Close(context.Background())
	a := brokertest.NewChannel(t)
	m := &message.Message{Body: []byte(strings.Repeat("x", 60)), Dictionary: []byte(strings.Repeat("d", 41)), Expiry: 60,
		Receivers: []message.Receiver{{ID: a}}}
	if err := b.Publish(context.Background(), m); !errors.Is(err, broker.ErrTooLarge) {
		t.Fatalf("a 101-byte payload under a 100-byte maximum: %v", err)
	}
	if s := b.Stats(); s.Messages != 0 {
		t.Fatalf("a refused message was stored: %+v", s)
	}
	m.Dictionary = m.Dictionary[:40]
	if err := b.Publish(context.Background(), m); err != nil {
		t.Fatalf("a 100-byte payload: %v", err)
	}
}

// The snapshot is written record by record; a restart restores every
// channel's messages, shared messages once, and what was lost.
func TestSnapshotRoundTripStreams(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := open(t, Options{DataDir: dir, HistoryPerChannel: 3}, nil)
	a, c := brokertest.NewChannel(t), brokertest.NewChannel(t)
	marker := publishBody(t, b, `"m"`, a)
	var ms []*message.Message
	for i := range 5 {
		ms = append(ms, publishBody(t, b, `{"n":`+string(rune('0'+i))+`}`, a, c))
	}
	before, _ := b.Recover(ctx, []channel.ID{a, c}, marker.ID, all)
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The file is a header and then one record per value.
	f, err := os.Open(filepath.Join(dir, snapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	dec := gob.NewDecoder(bufio.NewReader(f))
	var hdr snapHeader
	if err := dec.Decode(&hdr); err != nil || hdr.Version != snapshotVersion {
		t.Fatalf("header %+v, %v", hdr, err)
	}
	var records, messages int
	for {
		var rec snapRecord
		if err := dec.Decode(&rec); err != nil {
			break
		}
		records++
		if rec.Message != nil {
			messages++
		}
	}
	f.Close()
	if messages != 3 || records != 5 {
		t.Fatalf("%d records, %d messages; want 3 shared messages and 2 channels", records, messages)
	}

	b2 := open(t, Options{DataDir: dir, HistoryPerChannel: 3}, nil)
	defer b2.Close(ctx)
	after, err := b2.Recover(ctx, []channel.ID{a, c}, marker.ID, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Entries) != len(before.Entries) || after.Lost != before.Lost || after.Lost != ms[1].ID {
		t.Fatalf("restored %d entries, lost %s; before %d, lost %s", len(after.Entries), after.Lost, len(before.Entries), before.Lost)
	}
	for i := range before.Entries {
		x, y := before.Entries[i], after.Entries[i]
		if x.Msg.ID != y.Msg.ID || x.Channel != y.Channel || string(x.Msg.Body) != string(y.Msg.Body) {
			t.Fatalf("entry %d: %s@%s %s, restored %s@%s %s", i, x.Msg.ID, x.Channel, x.Msg.Body, y.Msg.ID, y.Channel, y.Msg.Body)
		}
	}
	if after.Entries[0].Msg != after.Entries[1].Msg {
		t.Fatal("a message to two channels was restored as two copies")
	}
	if err := b2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Restored under a smaller cap, the byte count is what is held.
	b3 := open(t, Options{DataDir: dir, HistoryPerChannel: 2}, nil)
	defer b3.Close(ctx)
	held, _ := b3.History(ctx, []channel.ID{a, c}, message.ID{}, all)
	var want int64
	for _, e := range held {
		want += entryBytes(e.Msg)
	}
	if s := b3.Stats(); len(held) != 4 || s.Bytes != want {
		t.Fatalf("restored under a cap of 2: %d entries, %d bytes counted, want 4 and %d", len(held), s.Bytes, want)
	}
}

// A version 1 snapshot (one gob value) from before the streaming format
// still restores.
func TestSnapshotVersionOneRestores(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := brokertest.NewChannel(t)
	old := snapshot{Version: 1,
		Messages: []snapMessage{{Epoch: 1_700_000_000, Seq: 7, Body: []byte(`{"v":1}`), Created: 1, Expiry: 0,
			Receivers: []message.Receiver{{ID: a}}}},
		Channels: []snapChannel{{ID: a, Messages: []int{0}}},
	}
	// Expiry 0 with no live retention would be dropped: give it a day.
	old.Messages[0].Expiry = 86400
	b := open(t, Options{}, nil)
	old.Messages[0].Created = b.now().UnixNano()
	b.Close(ctx)
	if err := writeAtomic(filepath.Join(dir, snapshotFile), func(w *bufio.Writer) error { return gob.NewEncoder(w).Encode(&old) }); err != nil {
		t.Fatal(err)
	}
	b2 := open(t, Options{DataDir: dir}, nil)
	defer b2.Close(ctx)
	got, err := b2.History(ctx, []channel.ID{a}, message.ID{}, all)
	if err != nil || len(got) != 1 || string(got[0].Msg.Body) != `{"v":1}` || got[0].Msg.ID.Seq != 7 {
		t.Fatalf("restored %v, %v", got, err)
	}
}

// Saving the snapshot costs little memory besides the history: it is
// encoded message by message, not built whole and then written (issue 11
// #4: a shutdown needed several times the history's size).
func TestSnapshotWriteAllocatesLittle(t *testing.T) {
	ctx := context.Background()
	b := open(t, Options{DataDir: t.TempDir()}, nil)
	body := strings.Repeat("x", 4096)
	chans := []channel.ID{brokertest.NewChannel(t), brokertest.NewChannel(t)}
	for i := range 2000 {
		publishBody(t, b, body, chans[i%2])
	}
	history := int64(2000 * len(body))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := int64(after.TotalAlloc - before.TotalAlloc); alloc > history/4 {
		t.Fatalf("saving %d bytes of history allocated %d bytes", history, alloc)
	} else {
		t.Logf("saving %d bytes of history allocated %d bytes", history, alloc)
	}
}
