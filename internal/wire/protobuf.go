// Protocol version 4 (binaryMode=true): subscribers receive ResponseBatch
// messages of proto/pull.proto, backends and clients send RequestBatch.
// Deliveries are encoded by hand so that a message is encoded once and shared
// by every subscriber; everything rare goes through the generated types.

package wire

import (
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// Field numbers of proto/pull.proto used by the hand-written encoder.
const (
	fieldResponses        = 1 // ResponseBatch.responses
	fieldOutgoingMessages = 1 // Response.outgoingMessages
	fieldMessages         = 1 // OutgoingMessagesResponse.messages

	fieldOutID      = 1
	fieldOutBody    = 2
	fieldOutExpiry  = 3
	fieldOutCreated = 4
	fieldOutSender  = 5

	fieldSenderType = 1
	fieldSenderID   = 2
)

// AppendOutgoingMessage appends m as one element of
// OutgoingMessagesResponse.messages: the field-1 tag, the length and the
// OutgoingMessage{id: the 13 bytes of m.ID, body, expiry, created: fixed32
// unix seconds, sender: {type, id (16 bytes, only for SenderClient)}}. The
// element names no channel or subscriber, so it is encoded once per message
// and shared. It is written by hand rather than with proto.Marshal because it
// runs once per published message and must not allocate; the bytes are
// identical to proto.Marshal's (tested).
//
// The sender is always written, even a BACKEND one with no id: the clients
// drop a message that has none.
func AppendOutgoingMessage(dst []byte, m *message.Message) []byte {
	senderLen := 0
	if m.Sender.Type != message.SenderUnknown {
		senderLen += 1 + protowire.SizeVarint(uint64(m.Sender.Type))
	}
	if m.Sender.Type == message.SenderClient {
		senderLen += 1 + protowire.SizeBytes(len(m.Sender.ID))
	}
	size := 1 + protowire.SizeBytes(message.BinaryIDLen) + 1 + protowire.SizeBytes(senderLen)
	if len(m.Body) > 0 {
		size += 1 + protowire.SizeBytes(len(m.Body))
	}
	if m.Expiry > 0 {
		size += 1 + protowire.SizeVarint(uint64(m.Expiry))
	}
	created := createdSeconds(m.Created)
	if created != 0 {
		size += 1 + 4
	}

	dst = protowire.AppendTag(dst, fieldMessages, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(size))
	id := m.ID.Binary()
	dst = protowire.AppendTag(dst, fieldOutID, protowire.BytesType)
	dst = protowire.AppendBytes(dst, id[:])
	if len(m.Body) > 0 {
		dst = protowire.AppendTag(dst, fieldOutBody, protowire.BytesType)
		dst = protowire.AppendBytes(dst, m.Body)
	}
	if m.Expiry > 0 {
		dst = protowire.AppendTag(dst, fieldOutExpiry, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(m.Expiry))
	}
	if created != 0 {
		dst = protowire.AppendTag(dst, fieldOutCreated, protowire.Fixed32Type)
		dst = protowire.AppendFixed32(dst, created)
	}
	dst = protowire.AppendTag(dst, fieldOutSender, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(senderLen))
	if m.Sender.Type != message.SenderUnknown {
		dst = protowire.AppendTag(dst, fieldSenderType, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(m.Sender.Type))
	}
	if m.Sender.Type == message.SenderClient {
		dst = protowire.AppendTag(dst, fieldSenderID, protowire.BytesType)
		dst = protowire.AppendBytes(dst, m.Sender.ID[:])
	}
	return dst
}

// createdSeconds is OutgoingMessage.created: fixed32 unix seconds. A time
// outside 1970–2106 cannot be represented; it is clamped rather than wrapped
// so that an unset (zero) time reads as 0, not as an arbitrary date.
func createdSeconds(t time.Time) uint32 {
	s := t.Unix()
	switch {
	case s < 0:
		return 0
	case s > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(s)
}

// AppendResponseBatchHeader appends what precedes elementsLen bytes of
// concatenated AppendOutgoingMessage output to make a
// ResponseBatch{responses: [{outgoingMessages: {messages: …}}]}: the two
// nested length-delimited headers. The batch is header ++ elements, so a
// delivery to many subscribers is this header and the shared, already
// encoded messages; nothing is re-encoded per subscriber.
func AppendResponseBatchHeader(dst []byte, elementsLen int) []byte {
	inner := 1 + protowire.SizeVarint(uint64(elementsLen)) + elementsLen
	dst = protowire.AppendTag(dst, fieldResponses, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(inner))
	dst = protowire.AppendTag(dst, fieldOutgoingMessages, protowire.BytesType)
	return protowire.AppendVarint(dst, uint64(elementsLen))
}

// ErrBadRequest reports bytes that are not a RequestBatch. Callers answer it
// with the protocol's decode error (4013) whatever the cause.
var ErrBadRequest = errors.New("bad protobuf request")

// DecodeRequestBatch decodes untrusted bytes from backends and clients with
// the generated types. Strings must be valid UTF-8, as proto3 requires (the
// bodies are relayed to browsers as JSON text); unknown fields are skipped so
// that newer senders still work. Errors wrap ErrBadRequest.
func DecodeRequestBatch(data []byte) (*pb.RequestBatch, error) {
	var b pb.RequestBatch
	if err := proto.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return &b, nil
}

// EncodeResponseBatch encodes the replies to channelStats and serverStats
// requests, which are rare enough for proto.Marshal.
func EncodeResponseBatch(b *pb.ResponseBatch) ([]byte, error) {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode response batch: %w", err)
	}
	return data, nil
}
