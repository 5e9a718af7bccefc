package hub

import (
	"math/bits"
	"sync"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// MaxFormats is the number of wire formats a Delivery caches frames for.
const MaxFormats = 4

// Encoder appends the wire form of m, delivered through ch, to dst.
type Encoder func(dst []byte, m *message.Message, ch channel.ID) []byte

// Delivery is one message on its way through one channel. It is shared by
// every subscriber of that channel, so each format is encoded once however
// many connections take it.
type Delivery struct {
	Msg     *message.Message
	Channel channel.ID
	// SampleMask says how many of this delivery's socket writes the
	// metrics time: those whose hash (of connection and message) has no
	// bit of it set. 0 (small channels, replays) times every write; a
	// channel of 1,000 subscribers gets 127, about eight writes per
	// message, so that a wide fan-out does not read the clock a thousand
	// times per message.
	SampleMask uint32
	frames     [MaxFormats]frame
}

// Sampled reports whether the metrics time this delivery's write to the
// connection identified by conn (any value that differs between
// connections): a hash of it and the message id, masked by SampleMask, so
// that each message is timed on a different few connections.
func (d *Delivery) Sampled(conn uint64) bool {
	h := (conn ^ d.Msg.ID.Seq) * 0x9E3779B97F4A7C15
	return uint32(h>>32)&d.SampleMask == 0
}

// samplesPerDelivery is about how many writes of one delivery the metrics
// time on a channel with many subscribers.
const samplesPerDelivery = 8

// sampleMask is the SampleMask of a delivery to n subscribers: a power of
// two less one, about n/samplesPerDelivery.
func sampleMask(n int) uint32 {
	if n <= samplesPerDelivery {
		return 0
	}
	return 1<<bits.Len(uint(n/samplesPerDelivery)) - 1
}

type frame struct {
	once sync.Once
	b    []byte
}

// NewDelivery returns a delivery of m through ch.
func NewDelivery(m *message.Message, ch channel.ID) *Delivery {
	return &Delivery{Msg: m, Channel: ch}
}

// Frame returns the encoding of the delivery in format (0 ≤ format <
// MaxFormats), encoding it on first use. The bytes are shared: do not modify.
func (d *Delivery) Frame(format int, enc Encoder) []byte {
	f := &d.frames[format]
	f.once.Do(func() { f.b = enc(nil, d.Msg, d.Channel) })
	return f.b
}
