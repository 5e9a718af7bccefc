package redis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// A stored and published message is one string: the 26-digit mid, which the
// publish script prepends once it has assigned it, then codecVersion and the
// rest of the message:
//
//	version     byte (2)
//	created     uvarint, unix microseconds
//	expiry      uvarint, seconds (0: live only)
//	sender      byte type, then for a client 16 bytes of id and a varint user id
//	receivers   uvarint count, each 16 bytes of id + 1 byte public flag
//	user params uvarint count, each 16 bytes of user channel + uvarint length + JSON
//	dictionary  uvarint length + JSON (0: none)
//	body        the remaining bytes
//
// Binary rather than JSON: a body is carried as it is, and every node decodes
// each message it receives, so the format is on the fan-out path.
const codecVersion = 2

// maxReceivers bounds the receiver count a decoder accepts, so a corrupt
// count cannot make it allocate without bound.
const maxReceivers = 1 << 16

var errCorrupt = errors.New("corrupt message")

// appendTail encodes everything of m but its id.
func appendTail(dst []byte, m *message.Message) []byte {
	dst = append(dst, codecVersion)
	dst = binary.AppendUvarint(dst, uint64(m.Created.UnixMicro()))
	dst = binary.AppendUvarint(dst, uint64(m.Expiry))
	dst = append(dst, byte(m.Sender.Type))
	if m.Sender.Type == message.SenderClient {
		dst = append(dst, m.Sender.ID[:]...)
		dst = binary.AppendVarint(dst, m.Sender.UserID)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Receivers)))
	for _, r := range m.Receivers {
		dst = append(dst, r.ID[:]...)
		flag := byte(0)
		if r.Public {
			flag = 1
		}
		dst = append(dst, flag)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.UserParams)))
	for id, p := range m.UserParams {
		dst = append(dst, id[:]...)
		dst = binary.AppendUvarint(dst, uint64(len(p)))
		dst = append(dst, p...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Dictionary)))
	dst = append(dst, m.Dictionary...)
	return append(dst, m.Body...)
}

// decode parses a stored message: mid followed by the tail.
func decode(s string) (*message.Message, error) {
	if len(s) < message.IDLen+1 {
		return nil, fmt.Errorf("%w: %d bytes", errCorrupt, len(s))
	}
	id, err := message.ParseID(s[:message.IDLen])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	b := []byte(s[message.IDLen:])
	if b[0] != codecVersion {
		return nil, fmt.Errorf("%w: version %d", errCorrupt, b[0])
	}
	b = b[1:]
	m := &message.Message{ID: id}
	created, b, err := uvarint(b)
	if err != nil {
		return nil, err
	}
	m.Created = time.UnixMicro(int64(created))
	expiry, b, err := uvarint(b)
	if err != nil {
		return nil, err
	}
	if expiry > 1<<32-1 {
		return nil, fmt.Errorf("%w: expiry %d", errCorrupt, expiry)
	}
	m.Expiry = uint32(expiry)
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: no sender", errCorrupt)
	}
	m.Sender.Type = message.SenderType(b[0])
	b = b[1:]
	if m.Sender.Type == message.SenderClient {
		if len(b) < len(channel.ID{}) {
			return nil, fmt.Errorf("%w: short sender id", errCorrupt)
		}
		b = b[copy(m.Sender.ID[:], b):]
		uid, n := binary.Varint(b)
		if n <= 0 {
			return nil, fmt.Errorf("%w: bad sender user id", errCorrupt)
		}
		m.Sender.UserID, b = uid, b[n:]
	}
	n, b, err := uvarint(b)
	if err != nil {
		return nil, err
	}
	const receiverLen = len(channel.ID{}) + 1
	if n > maxReceivers || n*uint64(receiverLen) > uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d receivers in %d bytes", errCorrupt, n, len(b))
	}
	m.Receivers = make([]message.Receiver, n)
	for i := range m.Receivers {
		copy(m.Receivers[i].ID[:], b)
		m.Receivers[i].Public = b[len(channel.ID{})] == 1
		b = b[receiverLen:]
	}
	if n, b, err = uvarint(b); err != nil {
		return nil, err
	}
	if n > maxReceivers {
		return nil, fmt.Errorf("%w: %d user params", errCorrupt, n)
	}
	if n > 0 {
		m.UserParams = make(map[channel.ID][]byte, n)
	}
	for range n {
		if len(b) < len(channel.ID{}) {
			return nil, fmt.Errorf("%w: short user params", errCorrupt)
		}
		var id channel.ID
		b = b[copy(id[:], b):]
		var p []byte
		if p, b, err = chunk(b); err != nil {
			return nil, err
		}
		m.UserParams[id] = p
	}
	if m.Dictionary, b, err = chunk(b); err != nil {
		return nil, err
	}
	if len(m.Dictionary) == 0 {
		m.Dictionary = nil
	}
	m.Body = b
	return m, nil
}

// chunk reads a uvarint length and that many bytes.
func chunk(b []byte) ([]byte, []byte, error) {
	n, b, err := uvarint(b)
	if err != nil {
		return nil, nil, err
	}
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %d bytes announced, %d left", errCorrupt, n, len(b))
	}
	return b[:n:n], b[n:], nil
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: bad varint", errCorrupt)
	}
	return v, b[n:], nil
}
