package bench

import (
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

// BenchmarkDeliverBinary is the subscriber's work for one protobuf
// delivery of 8 messages: walking the ResponseBatch and counting each.
func BenchmarkDeliverBinary(b *testing.B) {
	r, err := newRun(testConfig("http://127.0.0.1:1"))
	if err != nil {
		b.Fatal(err)
	}
	s := &sub{}
	r.subs = []*sub{s}
	var elems []byte
	for i := range 8 {
		m := &message.Message{Body: appendBody(nil, time.Now().UnixNano(), int64(i), 100), Expiry: 60,
			Created: time.Now(), Sender: message.Sender{Type: message.SenderBackend}}
		m.ID, _ = message.ParseID("1700000000000000000000000" + string(rune('0'+i)))
		elems = wire.AppendOutgoingMessage(elems, m)
	}
	data := append(wire.AppendResponseBatchHeader(nil, len(elems)), elems...)
	r.cfg.Binary = true
	now := time.Now().UnixNano()
	b.ReportAllocs()
	for b.Loop() {
		r.deliver(s, data, now)
	}
	if s.malformed != 0 {
		b.Fatalf("%d malformed", s.malformed)
	}
}
