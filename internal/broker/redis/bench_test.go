package redis

import (
	"context"
	"testing"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// BenchmarkPublish is one stored publish to one channel through the
// script, against the test's loopback Redis, one caller at a time.
func BenchmarkPublish(b *testing.B) {
	ctx := context.Background()
	br := node(b, shared.URL(), randomPrefix(b), nil, nil)
	ch := channel.ID{7}
	body := []byte(`{"module_id":"bench","command":"x","params":{}}`)
	b.ReportAllocs()
	for b.Loop() {
		m := &message.Message{Body: body, Expiry: 60, Receivers: []message.Receiver{{ID: ch}}}
		if err := br.Publish(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHistory is the memory engine's BenchmarkHistory on Redis: a
// recovery read of two channels with 1,000 messages each, 150 back.
func BenchmarkHistory(b *testing.B) {
	ctx := context.Background()
	br := node(b, shared.URL(), randomPrefix(b), nil, nil)
	private, sharedCh := channel.ID{1}, channel.ID{2}
	var mid message.ID
	for i := range 1000 {
		m := &message.Message{Body: []byte(`{"module_id":"bench","command":"x","params":{}}`), Expiry: 3600,
			Receivers: []message.Receiver{{ID: private}, {ID: sharedCh}}}
		if err := br.Publish(ctx, m); err != nil {
			b.Fatal(err)
		}
		if i == 850 {
			mid = m.ID
		}
	}
	limit := broker.HistoryLimit{PerChannel: 100, Total: 200}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got, err := br.History(ctx, []channel.ID{private, sharedCh}, mid, limit)
		if err != nil || len(got) != 200 {
			b.Fatalf("history: %d entries, %v", len(got), err)
		}
	}
}
