package pullclient

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrBadBatch is returned by EachOutgoing for bytes that are not a
// protobuf ResponseBatch.
var ErrBadBatch = errors.New("malformed protobuf ResponseBatch")

// OutgoingView is one OutgoingMessage of a version 4 ResponseBatch, read
// in place: its byte slices point into the batch and are valid only until
// the callback returns.
type OutgoingView struct {
	ID         []byte // 13 bytes: the 26-digit mid read as hex
	Body       []byte
	Expiry     uint32 // seconds
	Created    uint32 // unix seconds
	SenderType SenderType
	SenderID   []byte
}

// Field numbers of the ResponseBatch path to the messages (proto/pull.proto).
const (
	fieldResponses        = 1 // ResponseBatch.responses
	fieldOutgoingMessages = 1 // Response.outgoingMessages
	fieldMessages         = 1 // OutgoingMessagesResponse.messages
	fieldOutID            = 1
	fieldOutBody          = 2
	fieldOutExpiry        = 3
	fieldOutCreated       = 4
	fieldOutSender        = 5
	fieldSenderType       = 1
	fieldSenderID         = 2
)

// EachOutgoing calls fn with every OutgoingMessage of a ResponseBatch (a
// version 4 delivery), reading the wire format in place: it allocates
// nothing, so that a program holding thousands of connections (pushpull's
// load generator) can use it on every delivery. Responses of other kinds
// (channel stats answers) are skipped, as the official clients skip them.
// An error from fn stops the walk and is returned.
func EachOutgoing(batch []byte, fn func(OutgoingView) error) error {
	// ResponseBatch.responses → Response.outgoingMessages →
	// OutgoingMessagesResponse.messages, each loop taking one field's value
	// at a time, so that nothing escapes to the heap.
	for rest := batch; ; {
		resp, next, err := nextBytes(rest, fieldResponses)
		if err != nil || resp == nil {
			return err
		}
		rest = next
		for rest := resp; ; {
			outgoing, next, err := nextBytes(rest, fieldOutgoingMessages)
			if err != nil {
				return err
			}
			if outgoing == nil {
				break
			}
			rest = next
			for rest := outgoing; ; {
				msg, next, err := nextBytes(rest, fieldMessages)
				if err != nil {
					return err
				}
				if msg == nil {
					break
				}
				rest = next
				var v OutgoingView
				if err := readOutgoing(msg, &v); err != nil {
					return err
				}
				if err := fn(v); err != nil {
					return err
				}
			}
		}
	}
}

// readOutgoing fills v from one encoded OutgoingMessage.
func readOutgoing(msg []byte, v *OutgoingView) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return ErrBadBatch
		}
		msg = msg[n:]
		switch {
		case typ == protowire.BytesType && (num == fieldOutID || num == fieldOutBody || num == fieldOutSender):
			b, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return ErrBadBatch
			}
			switch num {
			case fieldOutID:
				v.ID = b
			case fieldOutBody:
				v.Body = b
			case fieldOutSender:
				if err := readSender(b, v); err != nil {
					return err
				}
			}
			msg = msg[m:]
		case typ == protowire.VarintType && num == fieldOutExpiry:
			x, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return ErrBadBatch
			}
			v.Expiry, msg = uint32(x), msg[m:]
		case typ == protowire.Fixed32Type && num == fieldOutCreated:
			x, m := protowire.ConsumeFixed32(msg)
			if m < 0 {
				return ErrBadBatch
			}
			v.Created, msg = x, msg[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, msg)
			if m < 0 {
				return ErrBadBatch
			}
			msg = msg[m:]
		}
	}
	return nil
}

// readSender fills v's sender from an encoded Sender.
func readSender(msg []byte, v *OutgoingView) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return ErrBadBatch
		}
		msg = msg[n:]
		switch {
		case typ == protowire.VarintType && num == fieldSenderType:
			x, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return ErrBadBatch
			}
			v.SenderType, msg = SenderType(x), msg[m:]
		case typ == protowire.BytesType && num == fieldSenderID:
			b, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return ErrBadBatch
			}
			v.SenderID, msg = b, msg[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, msg)
			if m < 0 {
				return ErrBadBatch
			}
			msg = msg[m:]
		}
	}
	return nil
}

// nextBytes finds the next length-delimited field num in msg, skipping
// the other fields, and returns its value (non-nil, maybe empty) and what
// follows it; a nil value means there is none.
func nextBytes(msg []byte, num protowire.Number) (val, rest []byte, err error) {
	for len(msg) > 0 {
		n, typ, k := protowire.ConsumeTag(msg)
		if k < 0 {
			return nil, nil, ErrBadBatch
		}
		msg = msg[k:]
		if typ != protowire.BytesType || n != num {
			m := protowire.ConsumeFieldValue(n, typ, msg)
			if m < 0 {
				return nil, nil, ErrBadBatch
			}
			msg = msg[m:]
			continue
		}
		b, m := protowire.ConsumeBytes(msg)
		if m < 0 {
			return nil, nil, ErrBadBatch
		}
		if b == nil {
			b = msg[:0] // present but empty: not "none"
		}
		return b, msg[m:], nil
	}
	return nil, nil, nil
}
