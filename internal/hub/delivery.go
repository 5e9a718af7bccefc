package hub

import (
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
	frames  [MaxFormats]frame
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
