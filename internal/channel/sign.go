package channel

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"strconv"
	"sync"
)

// Algo is the HMAC hash, Bitrix's signature_algo setting. The zero value is
// SHA1 so that an unset setting means what it means to Bitrix.
type Algo int

const (
	// SHA1 is Bitrix's default and the reference servers' default.
	SHA1 Algo = iota
	// SHA256 is what a portal configured with signature_algo=sha256 signs with.
	SHA256
)

// ParseAlgo reads the setting's spelling. Only the two spellings Bitrix
// writes are accepted: a typo must fail at start-up, not make every
// subscriber's signature mismatch.
func ParseAlgo(s string) (Algo, error) {
	switch s {
	case "sha1":
		return SHA1, nil
	case "sha256":
		return SHA256, nil
	}
	return SHA1, fmt.Errorf("unknown signature algorithm %q: want sha1 or sha256", s)
}

// String returns the setting's spelling, so that ParseAlgo(a.String())
// round-trips; values outside the enum print as Algo(n).
func (a Algo) String() string {
	switch a {
	case SHA1:
		return "sha1"
	case SHA256:
		return "sha256"
	}
	return "Algo(" + strconv.Itoa(int(a)) + ")"
}

func (a Algo) newHash() (func() hash.Hash, int) {
	if a == SHA256 {
		return sha256.New, sha256.Size
	}
	return sha1.New, sha1.Size
}

// maxMACSize bounds the raw MAC of every supported Algo, so that MACs can be
// computed into stack arrays.
const maxMACSize = sha256.Size

// scratchSize is how much string data is copied per hash write. Strings are
// copied rather than converted because a []byte(s) conversion passed through
// the hash.Hash interface escapes and would cost an allocation per call.
const scratchSize = 128

// macState is one reusable HMAC. crypto/hmac keeps the hash states after the
// key⊕ipad and key⊕opad blocks once it has been Reset, so a reused instance
// skips those two compressions as well as the allocations of hmac.New.
type macState struct {
	h       hash.Hash
	scratch [scratchSize]byte
}

// Signer signs and verifies with the key shared with the Bitrix backend. Its
// key and algorithm never change after NewSigner, and it is safe for
// concurrent use. The zero Signer has no key and is not usable: build one
// with NewSigner, and share it by pointer.
type Signer struct {
	algo    Algo
	size    int
	newHash func() hash.Hash
	key     []byte
	// states caches HMACs keyed with key. It is per Signer, not global, so
	// that two signers (tests, a key change on reload) never share state.
	states sync.Pool
}

// NewSigner returns a signer for key with algo; an algo outside the enum is
// taken as SHA1. key is copied, so the caller may reuse it.
func NewSigner(key []byte, algo Algo) *Signer {
	if algo != SHA256 {
		algo = SHA1
	}
	s := &Signer{algo: algo, key: append([]byte(nil), key...)}
	s.newHash, s.size = algo.newHash()
	s.states.New = func() any {
		m := &macState{h: hmac.New(s.newHash, s.key)}
		m.h.Reset() // makes hmac precompute its padded states
		return m
	}
	// Build one HMAC now: if the runtime refuses the key or hash (FIPS
	// 140-only mode), it does so at start-up rather than on a request.
	s.states.Put(s.states.New())
	return s
}

// Algo returns the algorithm signatures are computed with.
func (s *Signer) Algo() Algo { return s.algo }

// Size is the length of a raw signature in bytes.
func (s *Signer) Size() int { return s.size }

// begin takes a cached HMAC, reset to the keyed state.
func (s *Signer) begin() *macState {
	m := s.states.Get().(*macState)
	m.h.Reset()
	return m
}

// write feeds p to the HMAC through the scratch buffer: handing p itself to
// the hash.Hash interface would make it escape, and with it every caller's
// stack buffer.
func write[T string | []byte](m *macState, p T) {
	for len(p) > 0 {
		n := copy(m.scratch[:], p)
		m.h.Write(m.scratch[:n])
		p = p[n:]
	}
}

// end copies the MAC to out, returns m to the cache and returns the written
// prefix of out.
func (s *Signer) end(m *macState, out *[maxMACSize]byte) []byte {
	n := copy(out[:], m.h.Sum(m.scratch[:0]))
	s.states.Put(m)
	return out[:n]
}

// Sign returns the raw HMAC of data: the form protobuf receivers carry.
func (s *Signer) Sign(data []byte) []byte {
	m := s.begin()
	write(m, data)
	var out [maxMACSize]byte
	return append([]byte(nil), s.end(m, &out)...)
}

// SignHex returns the lower-case hex HMAC of data, the form Bitrix puts
// after the dot of a signed channel id.
func (s *Signer) SignHex(data string) string {
	m := s.begin()
	write(m, data)
	var mac [maxMACSize]byte
	var buf [2 * maxMACSize]byte
	return string(appendHex(buf[:0], s.end(m, &mac)))
}

// Verify reports whether sigHex is the hex HMAC of data. The comparison is
// constant time so that a subscriber cannot forge a signature byte by byte.
// Upper-case hex is refused, as by the reference server's pattern, so that a
// signed id has exactly one spelling.
func (s *Signer) Verify(data, sigHex string) bool {
	var want [maxMACSize]byte
	if len(sigHex) != 2*s.size || !decodeLowerHex(want[:s.size], sigHex) {
		return false
	}
	m := s.begin()
	write(m, data)
	var got [maxMACSize]byte
	return hmac.Equal(want[:s.size], s.end(m, &got))
}

// VerifyRaw reports whether sig is the raw HMAC of data, in constant time.
func (s *Signer) VerifyRaw(data string, sig []byte) bool {
	if len(sig) != s.size {
		return false
	}
	m := s.begin()
	write(m, data)
	var got [maxMACSize]byte
	return hmac.Equal(sig, s.end(m, &got))
}

// SignChannel returns "id.signature", the form of a shared channel (and of
// any channel without a public id).
func (s *Signer) SignChannel(id ID) string {
	var buf [2*IDLen + 1 + 2*maxMACSize]byte
	return s.signed(id.AppendHex(buf[:0]))
}

// signed returns data + "." + the hex signature of data.
func (s *Signer) signed(data []byte) string {
	m := s.begin()
	write(m, data)
	var mac [maxMACSize]byte
	sig := s.end(m, &mac)
	data = append(data, '.')
	return string(appendHex(data, sig))
}

// SignPrivate returns "private:public.signature", the form of a private
// channel with its public id (protocol version 4). The signature covers the
// pair, which is what lets the public id alias the private channel.
func (s *Signer) SignPrivate(priv, pub ID) string {
	var buf [4*IDLen + 2 + 2*maxMACSize]byte
	b := priv.AppendHex(buf[:0])
	b = append(b, ':')
	return s.signed(pub.AppendHex(b))
}

// publicPrefix is what Bitrix prepends to a public id before signing it, so
// that a public signature never validates the id as a subscribable channel.
const publicPrefix = "public:"

// SignPublic returns "public.signature", the form other clients address a
// user's public channel with.
func (s *Signer) SignPublic(pub ID) string {
	var buf [2*IDLen + 1 + 2*maxMACSize]byte
	b := pub.AppendHex(buf[:0])
	m := s.begin()
	write(m, publicPrefix)
	write(m, b)
	var mac [maxMACSize]byte
	sig := s.end(m, &mac)
	b = append(b, '.')
	return string(appendHex(b, sig))
}

// VerifyPublic checks the raw signature a protobuf receiver carries for a
// public id, in constant time.
func (s *Signer) VerifyPublic(pub ID, sig []byte) bool {
	if len(sig) != s.size {
		return false
	}
	var buf [2 * IDLen]byte
	m := s.begin()
	write(m, publicPrefix)
	write(m, pub.AppendHex(buf[:0]))
	var got [maxMACSize]byte
	return hmac.Equal(sig, s.end(m, &got))
}

// Key returns a copy of the signing key, for the version 5 connection
// tokens, which are always HMAC-SHA256 with this key whatever the channel
// signature algorithm (docs/protocol-v5.md, "What is supported").
func (s *Signer) Key() []byte { return append([]byte(nil), s.key...) }
