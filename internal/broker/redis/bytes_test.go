package redis

import (
	"context"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/brokertest"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// A channel's byte count is what its byte cap is checked against, so it
// must follow every way a message leaves the channel's history: trimmed by
// the caps, or found expired by a reader (Recover, LastID). A count that
// kept an expired message's bytes would make the channel keep less and
// less until it kept only its newest message.
func TestChannelBytesFollowExpiredEntries(t *testing.T) {
	ctx := context.Background()
	b := node(t, shared.URL(), randomPrefix(t), nil, func(o *Options) {
		o.HistoryPerChannel = 3
		o.ChannelMaxBytes = 1 << 20
	})
	a := brokertest.NewChannel(t)
	var ms []*message.Message
	for i := range 6 {
		ms = append(ms, publishTo(t, b, `"`+strings.Repeat("x", 100*(i+1))+`"`, a))
	}
	checkChannelBytes(t, b, a, 3) // the count cap dropped three

	// Expire ms[4] behind the broker's back, as Redis would: a reader
	// that meets its index entry drops it.
	expire(t, b, ms[4].ID)
	if _, err := b.Recover(ctx, []channel.ID{a}, message.ID{}, broker.HistoryLimit{PerChannel: 10, Total: 10}); err != nil {
		t.Fatal(err)
	}
	checkChannelBytes(t, b, a, 2)

	expire(t, b, ms[5].ID)
	if id, ok, err := b.LastID(ctx, []channel.ID{a}); err != nil || !ok || id != ms[3].ID {
		t.Fatalf("last id %s, %v, %v; want %s", id, ok, err, ms[3].ID)
	}
	checkChannelBytes(t, b, a, 1)
}

func expire(t *testing.T, b *Broker, id message.ID) {
	t.Helper()
	if err := b.client.Do(context.Background(), b.client.B().Del().Key(b.base+"m:"+id.String()).Build()).Error(); err != nil {
		t.Fatal(err)
	}
}

// checkChannelBytes checks that ch's index, sizes and sum agree and that
// the index holds n mids.
func checkChannelBytes(t *testing.T, b *Broker, ch channel.ID, n int) {
	t.Helper()
	ctx := context.Background()
	h := hex.EncodeToString(ch[:])
	mids, err := b.client.Do(ctx, b.client.B().Zrange().Key(b.base+"h:"+h).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := b.client.Do(ctx, b.client.B().Hgetall().Key(b.base+"z:"+h).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := b.client.Do(ctx, b.client.B().Get().Key(b.base+"s:"+h).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	if len(mids) != n || len(sizes) != n {
		t.Fatalf("index holds %d mids and sizes %d; want %d", len(mids), len(sizes), n)
	}
	var total int64
	for _, mid := range mids {
		s, ok := sizes[mid]
		if !ok {
			t.Fatalf("mid %s has no size", mid)
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		total += v
	}
	if sum != total {
		t.Fatalf("channel bytes %d; its %d messages hold %d", sum, n, total)
	}
}

// The sizes and their sum expire with the history they count, also when
// the byte cap was set after the channel's history began: keys without an
// expiry would outlive every message and leak.
func TestChannelBytesExpireWithTheirHistory(t *testing.T) {
	ctx := context.Background()
	prefix := randomPrefix(t)
	a := brokertest.NewChannel(t)
	publishTo(t, node(t, shared.URL(), prefix, nil, nil), `"before the cap"`, a)
	b := node(t, shared.URL(), prefix, nil, func(o *Options) { o.ChannelMaxBytes = 1 << 20 })
	m := &message.Message{Body: []byte(`"short-lived"`), Expiry: 5, Receivers: []message.Receiver{{ID: a}}}
	if err := b.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(a[:])
	history, err := b.client.Do(ctx, b.client.B().Pttl().Key(b.base+"h:"+h).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"z:", "s:"} {
		left, err := b.client.Do(ctx, b.client.B().Pttl().Key(b.base+k+h).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		// The history keeps the first message's 60 s; its sizes must
		// live as long, not the new message's 5 s, nor forever (-1). They
		// are read after the history, so a slow machine may see them a
		// little shorter.
		if left < history-20_000 || left > history {
			t.Errorf("%s expires in %d ms; the history in %d ms", k, left, history)
		}
	}
}
