// Package message defines the messages the server carries and their ids.
//
// A message id ("mid") is the Bitrix push server's: 26 decimal digits made of a
// 10-digit epoch (unix seconds of the store's first start) and a 16-digit
// counter. Ids compare in the order they were assigned, and the same digits,
// read as hex, are the 13 bytes of a protobuf OutgoingMessage.id.
//
// The package is pure: no I/O and no goroutines.
package message

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"sync/atomic"
)

const (
	epochDigits = 10
	seqDigits   = 16
	// IDLen is the length of a mid in decimal digits.
	IDLen = epochDigits + seqDigits
	// BinaryIDLen is the length of a mid in protobuf: the 26 digits read as hex.
	BinaryIDLen = IDLen / 2

	maxEpoch = 9_999_999_999
	maxSeq   = 9_999_999_999_999_999
)

// ID is a message id. The zero ID precedes every assigned id.
type ID struct {
	Epoch uint64 // unix seconds; at most 10 digits
	Seq   uint64 // counter within the epoch; at most 16 digits
}

// Compare returns -1, 0 or +1 as a is before, equal to or after b.
func (a ID) Compare(b ID) int {
	switch {
	case a.Epoch < b.Epoch:
		return -1
	case a.Epoch > b.Epoch:
		return 1
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return 0
}

// Less reports whether a was assigned before b.
func (a ID) Less(b ID) bool { return a.Compare(b) < 0 }

// IsZero reports whether the id is unset.
func (a ID) IsZero() bool { return a == ID{} }

// AppendText appends the 26 decimal digits.
func (a ID) AppendText(dst []byte) []byte {
	var buf [IDLen]byte
	v := a.Seq
	for i := IDLen - 1; i >= epochDigits; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	v = a.Epoch
	for i := epochDigits - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[:]...)
}

// String returns the 26 decimal digits.
func (a ID) String() string { return string(a.AppendText(nil)) }

// Binary returns the 13 bytes of the protobuf form: the 26 digits read as hex.
func (a ID) Binary() [BinaryIDLen]byte {
	var text [IDLen]byte
	a.AppendText(text[:0])
	var out [BinaryIDLen]byte
	// The digits are valid hex, so decoding cannot fail.
	_, _ = hex.Decode(out[:], text[:])
	return out
}

// ParseID parses a mid as clients send it: exactly 26 decimal digits.
func ParseID(s string) (ID, error) {
	if len(s) != IDLen {
		return ID{}, fmt.Errorf("message id %q: want %d digits", s, IDLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return ID{}, fmt.Errorf("message id %q: not decimal digits", s)
		}
	}
	epoch, _ := strconv.ParseUint(s[:epochDigits], 10, 64)
	seq, _ := strconv.ParseUint(s[epochDigits:], 10, 64)
	return ID{Epoch: epoch, Seq: seq}, nil
}

// IDFromBinary parses the 13 bytes of a protobuf id.
func IDFromBinary(b []byte) (ID, error) {
	if len(b) != BinaryIDLen {
		return ID{}, fmt.Errorf("binary message id: want %d bytes, got %d", BinaryIDLen, len(b))
	}
	return ParseID(hex.EncodeToString(b))
}

// Generator assigns ids in one epoch. It is safe for concurrent use.
type Generator struct {
	epoch uint64
	seq   atomic.Uint64
}

// NewGenerator returns a generator whose next id is {epoch, last+1}.
func NewGenerator(epoch, last uint64) (*Generator, error) {
	if epoch > maxEpoch {
		return nil, fmt.Errorf("message id epoch %d has more than %d digits", epoch, epochDigits)
	}
	if last >= maxSeq {
		return nil, fmt.Errorf("message id counter %d is exhausted", last)
	}
	g := &Generator{epoch: epoch}
	g.seq.Store(last)
	return g, nil
}

// Next returns a new id, greater than every id it returned before.
//
// The 16-digit counter lasts 10^16 ids: at a million ids a second that is 300
// years, so exhaustion is not handled beyond the check at construction.
func (g *Generator) Next() ID { return ID{Epoch: g.epoch, Seq: g.seq.Add(1)} }

// Last returns the last id handed out, or {epoch, 0} if none.
func (g *Generator) Last() ID { return ID{Epoch: g.epoch, Seq: g.seq.Load()} }
