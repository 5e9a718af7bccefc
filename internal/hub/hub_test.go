package hub

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

type sink struct {
	mu sync.Mutex
	ds []*Delivery
}

func (s *sink) Deliver(d *Delivery) {
	s.mu.Lock()
	s.ds = append(s.ds, d)
	s.mu.Unlock()
}

func id(b byte) channel.ID { return channel.ID{b, b} }

func msg(rs ...message.Receiver) *message.Message {
	return &message.Message{ID: message.ID{Epoch: 1, Seq: 1}, Body: []byte(`{}`), Receivers: rs}
}

func TestAttachDetachReportsFirstAndLast(t *testing.T) {
	h := New()
	a, b := &sink{}, &sink{}
	subs := []Subscription{{Channel: id(1)}, {Channel: id(2)}}
	if first := h.Attach(a, subs); len(first) != 2 {
		t.Fatalf("first attach reported %v, want both channels", first)
	}
	if first := h.Attach(b, subs[:1]); len(first) != 0 {
		t.Fatalf("second subscriber reported %v as new", first)
	}
	if h.Channels() != 2 || h.Subscribers(id(1)) != 2 {
		t.Fatalf("channels=%d subscribers=%d", h.Channels(), h.Subscribers(id(1)))
	}
	if last := h.Detach(a, subs); len(last) != 1 || last[0] != id(2) {
		t.Fatalf("detach reported %v, want only channel 2", last)
	}
	if last := h.Detach(b, subs[:1]); len(last) != 1 || last[0] != id(1) {
		t.Fatalf("detach reported %v, want channel 1", last)
	}
	if h.Channels() != 0 {
		t.Fatal("channels left after everyone detached")
	}
}

func TestDeliverOncePerChannelThroughAliases(t *testing.T) {
	h := New()
	s := &sink{}
	priv, pub, shared := id(1), id(9), id(2)
	h.Attach(s, []Subscription{{Channel: priv, Public: pub, HasPublic: true}, {Channel: shared}})

	// Private, its public alias and the shared channel: the private channel
	// is reached twice but delivered once; the shared one once.
	h.Deliver(msg(message.Receiver{ID: priv}, message.Receiver{ID: pub, Public: true}, message.Receiver{ID: shared}))
	if len(s.ds) != 2 || s.ds[0].Channel != priv || s.ds[1].Channel != shared {
		t.Fatalf("deliveries = %+v; want priv then shared", s.ds)
	}
	// A public id that nobody declared reaches nobody, and a private id is
	// never treated as public.
	h.Deliver(msg(message.Receiver{ID: id(7), Public: true}, message.Receiver{ID: priv, Public: true}))
	if len(s.ds) != 2 {
		t.Fatalf("unknown public ids were delivered: %+v", s.ds[2:])
	}
	if n := h.Delivered(); n != 2 {
		t.Fatalf("Delivered() = %d, want the 2 hand-offs", n)
	}
}

func TestAliasLivesWhileAnyDeclarerIsAttached(t *testing.T) {
	h := New()
	a, b := &sink{}, &sink{}
	sub := []Subscription{{Channel: id(1), Public: id(9), HasPublic: true}}
	h.Attach(a, sub)
	h.Attach(b, sub)
	h.Detach(a, sub)
	if _, ok := h.Resolve(message.Receiver{ID: id(9), Public: true}); !ok {
		t.Fatal("alias dropped while a declarer is still attached")
	}
	h.Detach(b, sub)
	if _, ok := h.Resolve(message.Receiver{ID: id(9), Public: true}); ok {
		t.Fatal("alias kept after the last declarer left")
	}
}

func TestDeliveryIsEncodedOncePerFormat(t *testing.T) {
	h := New()
	sinks := make([]*sink, 100)
	for i := range sinks {
		sinks[i] = &sink{}
		h.Attach(sinks[i], []Subscription{{Channel: id(1)}})
	}
	h.Deliver(msg(message.Receiver{ID: id(1)}))
	var calls atomic.Int32
	enc := func(dst []byte, m *message.Message, ch channel.ID) []byte {
		calls.Add(1)
		return append(dst, m.Body...)
	}
	var wg sync.WaitGroup
	for _, s := range sinks {
		if len(s.ds) != 1 {
			t.Fatalf("a subscriber got %d deliveries", len(s.ds))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if string(s.ds[0].Frame(0, enc)) != `{}` {
				t.Error("wrong frame")
			}
		}()
	}
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("encoded %d times for 100 subscribers, want 1", calls.Load())
	}
}

func BenchmarkDeliverFanOut1000(b *testing.B) {
	h := New()
	for range 1000 {
		h.Attach(&nopSub{}, []Subscription{{Channel: id(1)}})
	}
	m := msg(message.Receiver{ID: id(1)})
	b.ReportAllocs()
	for b.Loop() {
		h.Deliver(m)
	}
}

type nopSub struct{ n int }

func (s *nopSub) Deliver(*Delivery) { s.n++ }

// TestSampleMask: small channels time every write, wide ones about
// samplesPerDelivery writes per message.
func TestSampleMask(t *testing.T) {
	for _, c := range []struct {
		subscribers int
		mask        uint32
	}{{0, 0}, {1, 0}, {8, 0}, {9, 1}, {16, 3}, {1000, 127}, {100000, 16383}} {
		if got := sampleMask(c.subscribers); got != c.mask {
			t.Errorf("sampleMask(%d) = %d, want %d", c.subscribers, got, c.mask)
		}
		if n := c.subscribers; n > samplesPerDelivery {
			if per := float64(n) / float64(c.mask+1); per < samplesPerDelivery/2 || per > samplesPerDelivery {
				t.Errorf("%d subscribers: %.1f sampled writes per message", n, per)
			}
		}
	}
	h := New()
	subs := make([]*sink, 20)
	for i := range subs {
		subs[i] = &sink{}
		h.Attach(subs[i], []Subscription{{Channel: id(1)}})
	}
	h.Deliver(msg(message.Receiver{ID: id(1)}))
	if d := subs[0].ds[0]; d.SampleMask != sampleMask(20) {
		t.Errorf("delivery to 20 subscribers has SampleMask %d, want %d", d.SampleMask, sampleMask(20))
	}
}

// TestSampledSpreadsOverConnections: about one connection in SampleMask+1
// times a message, and different ones for different messages.
func TestSampledSpreadsOverConnections(t *testing.T) {
	d := NewDelivery(msg(), id(1))
	d.SampleMask = sampleMask(1000)
	sampled := 0
	for conn := range uint64(100000) {
		if d.Sampled(conn * 7919) {
			sampled++
		}
	}
	if want := 100000 / int(d.SampleMask+1); sampled < want*8/10 || sampled > want*12/10 {
		t.Errorf("%d of 100000 connections sampled, want about %d", sampled, want)
	}
	d.SampleMask = 0
	if !d.Sampled(12345) {
		t.Error("mask 0 does not sample every write")
	}
}

// BenchmarkSampled is what a socket write outside the metrics' sample
// costs the writer.
func BenchmarkSampled(b *testing.B) {
	d := NewDelivery(msg(), id(1))
	d.SampleMask = sampleMask(1000)
	n := 0
	for i := range b.N {
		if d.Sampled(uint64(i) * 7919) {
			n++
		}
	}
	b.ReportMetric(float64(n)/float64(b.N), "sampled/op")
}
