package message

import (
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

// SenderType is who published a message; the values are the protobuf enum's.
type SenderType int32

const (
	SenderUnknown SenderType = 0
	SenderClient  SenderType = 1 // a subscriber publishing to public channels
	SenderBackend SenderType = 2 // a trusted backend through /pub/ or REST
)

// Sender describes the publisher. ID is the publishing client's public channel
// id and is set only for SenderClient.
type Sender struct {
	Type SenderType
	ID   channel.ID
	// UserID is the publishing user of a protocol version 5 client (its
	// token's sub), set only for SenderClient; 0 when unknown.
	UserID int64
}

// Receiver is one addressee of a message. A public receiver is a public
// channel id that reaches the private channel it is paired with.
type Receiver struct {
	ID     channel.ID
	Public bool
}

// Message is one published message. Once published it is shared by every
// subscriber and the history, so it must not be modified.
type Message struct {
	ID        ID
	Receivers []Receiver
	// Body is the publisher's text, normally a JSON object; the server never
	// rewrites it.
	Body    []byte
	Created time.Time
	// Expiry is the effective time to live in seconds; 0 means delivered live
	// and never stored.
	Expiry uint32
	Sender Sender
	// UserParams and Dictionary are protocol version 5's per-recipient
	// additions to body.params (docs/protocol-v5.md, "Messages"), which the
	// clients merge in, so the body itself stays the same for every
	// recipient. UserParams is keyed by the receiver channel of the user each
	// object is for (channel.User); values and Dictionary are JSON objects;
	// nil when absent. An engine that stores messages outside the process
	// must keep them.
	UserParams map[channel.ID][]byte
	Dictionary []byte
}

// ExpiresAt is when the stored message stops being replayable.
func (m *Message) ExpiresAt() time.Time {
	return m.Created.Add(time.Duration(m.Expiry) * time.Second)
}
