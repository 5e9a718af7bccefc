// Package channel holds channel ids, their HMAC signatures and the parsing of
// the CHANNEL_ID lists that subscribers and backends send.
//
// It is pure (no I/O, no goroutines, no mutable globals; a Signer's only
// mutable part is its cache of keyed HMACs) so that the code that judges
// untrusted input can be fuzzed on its own.
package channel

import (
	"encoding/hex"
	"errors"
)

// IDLen is the size of a channel id in bytes; on the wire it is 32 lower-case
// hex characters (an md5 made by the Bitrix backend) or 16 raw bytes in protobuf.
const IDLen = 16

// ID is a channel id.
type ID [IDLen]byte

// ErrBadID reports a channel id that is not 32 lower-case hex characters.
var ErrBadID = errors.New("channel id must be 32 lower-case hex characters")

// ParseID parses the 32 lower-case hex characters of a channel id. Upper-case
// hex is refused, as by the reference server's pattern ^[a-f0-9]{32}$, so that
// one channel never has two spellings.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDLen || !decodeLowerHex(id[:], s) {
		return ID{}, ErrBadID
	}
	return id, nil
}

// IDFromBytes takes the 16 raw bytes of a protobuf receiver id.
func IDFromBytes(b []byte) (ID, bool) {
	var id ID
	if len(b) != IDLen {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

// String returns the 32 lower-case hex characters.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// AppendHex appends the 32 lower-case hex characters to dst.
func (id ID) AppendHex(dst []byte) []byte { return appendHex(dst, id[:]) }

// IsZero reports whether id is the zero value (never a real channel).
func (id ID) IsZero() bool { return id == ID{} }

func appendHex(dst, src []byte) []byte { return hex.AppendEncode(dst, src) }

// decodeLowerHex decodes s, exactly 2*len(dst) lower-case hex characters, into
// dst. encoding/hex would also take upper case, which the reference server's
// patterns refuse.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := lowerHexValue(s[2*i])
		lo, ok2 := lowerHexValue(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHexValue(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
