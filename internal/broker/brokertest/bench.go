package brokertest

import (
	"context"
	"testing"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// BenchHistory measures one reconnect's recovery read on br: a connection's
// private and shared channel, each with 1,000 stored messages, everything
// after a mid 150 messages back, at the reference limits (100 per channel,
// 200 in all). Every engine runs the same benchmark.
func BenchHistory(b *testing.B, br broker.Broker) {
	ctx := context.Background()
	private, shared := channel.ID{1}, channel.ID{2}
	var mid message.ID
	for i := range 1000 {
		m := &message.Message{Body: []byte(`{"module_id":"bench","command":"x","params":{}}`), Expiry: 3600,
			Receivers: []message.Receiver{{ID: private}, {ID: shared}}}
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
		got, err := br.History(ctx, []channel.ID{private, shared}, mid, limit)
		if err != nil || len(got) != 200 {
			b.Fatalf("history: %d entries, %v", len(got), err)
		}
	}
}
