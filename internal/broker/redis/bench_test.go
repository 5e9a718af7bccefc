package redis

import (
	"context"
	"testing"

	"github.com/pushpull/pushpull/internal/broker/brokertest"
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

// BenchmarkHistory is the memory engine's on Redis.
func BenchmarkHistory(b *testing.B) {
	brokertest.BenchHistory(b, node(b, shared.URL(), randomPrefix(b), nil, nil))
}
