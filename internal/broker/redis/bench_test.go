package redis

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/broker/brokertest"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// BenchmarkPublish is one stored publish to one channel through the
// script, against the test's loopback Redis, one caller at a time, with and
// without the per-channel byte count. The channel is full (at its message
// cap), as a busy channel is, so each publish also drops one.
func BenchmarkPublish(b *testing.B) {
	for _, bench := range []struct {
		name  string
		bytes int64
	}{{"NoByteCap", 0}, {"ByteCap", 16 << 20}} {
		b.Run(bench.name, func(b *testing.B) {
			ctx := context.Background()
			br := node(b, shared.URL(), randomPrefix(b), nil, func(o *Options) {
				o.HistoryPerChannel = 100
				o.ChannelMaxBytes = bench.bytes
			})
			ch := channel.ID{7}
			body := []byte(`{"module_id":"bench","command":"x","params":{}}`)
			publish := func() {
				m := &message.Message{Body: body, Expiry: 60, Receivers: []message.Receiver{{ID: ch}}}
				if err := br.Publish(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			for range 100 {
				publish()
			}
			before := scriptMicros(b, br)
			b.ReportAllocs()
			for b.Loop() {
				publish()
			}
			b.ReportMetric(float64(scriptMicros(b, br)-before)/float64(b.N), "redis-µs/op")
		})
	}
}

// BenchmarkHistory is the memory engine's on Redis.
func BenchmarkHistory(b *testing.B) {
	brokertest.BenchHistory(b, node(b, shared.URL(), randomPrefix(b), nil, nil))
}

// scriptMicros is the time Redis has spent running scripts, by its own
// count (INFO commandstats): unlike ns/op it leaves out the round trip and
// the client, so it is what a script change costs Redis.
func scriptMicros(b *testing.B, br *Broker) int64 {
	b.Helper()
	info, err := br.client.Do(context.Background(), br.client.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_eval") {
			continue
		}
		for _, field := range strings.Split(strings.TrimSpace(line[strings.IndexByte(line, ':')+1:]), ",") {
			if v, ok := strings.CutPrefix(field, "usec="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					b.Fatal(err)
				}
				total += n
			}
		}
	}
	return total
}
