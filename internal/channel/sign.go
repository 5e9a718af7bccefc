package channel

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
)

// Algo is the HMAC hash, Bitrix's signature_algo setting.
type Algo int

const (
	// SHA1 is Bitrix's default and the reference servers' default.
	SHA1 Algo = iota
	SHA256
)

// ParseAlgo reads the setting's spelling.
func ParseAlgo(s string) (Algo, error) {
	switch s {
	case "sha1":
		return SHA1, nil
	case "sha256":
		return SHA256, nil
	}
	return 0, fmt.Errorf("unknown signature algorithm %q: want sha1 or sha256", s)
}

// String returns the setting's spelling.
func (a Algo) String() string {
	if a == SHA256 {
		return "sha256"
	}
	return "sha1"
}

func (a Algo) hash() func() hash.Hash {
	if a == SHA256 {
		return sha256.New
	}
	return sha1.New
}

// Signer signs and verifies with the key shared with the Bitrix backend. It
// is immutable and safe for concurrent use.
type Signer struct {
	key  []byte
	algo Algo
}

// NewSigner returns a signer for key with algo.
func NewSigner(key []byte, algo Algo) *Signer {
	return &Signer{key: append([]byte(nil), key...), algo: algo}
}

// Size is the length of a raw signature in bytes.
func (s *Signer) Size() int {
	if s.algo == SHA256 {
		return sha256.Size
	}
	return sha1.Size
}

// Sign returns the raw HMAC of data.
func (s *Signer) Sign(data []byte) []byte {
	m := hmac.New(s.algo.hash(), s.key)
	m.Write(data)
	return m.Sum(nil)
}

func (s *Signer) signString(data string) []byte {
	m := hmac.New(s.algo.hash(), s.key)
	_, _ = m.Write([]byte(data))
	return m.Sum(nil)
}

// SignHex returns the lower-case hex HMAC of data, the form Bitrix puts
// after the dot of a signed channel id.
func (s *Signer) SignHex(data string) string { return hex.EncodeToString(s.signString(data)) }

// Verify reports whether sigHex is the hex HMAC of data, in constant time.
// Upper-case hex is refused, as the reference server's pattern does.
func (s *Signer) Verify(data, sigHex string) bool {
	if len(sigHex) != 2*s.Size() || !isLowerHex(sigHex) {
		return false
	}
	var buf [sha256.Size]byte
	sig := buf[:s.Size()]
	if _, err := hex.Decode(sig, []byte(sigHex)); err != nil {
		return false
	}
	return hmac.Equal(sig, s.signString(data))
}

// VerifyRaw reports whether sig is the raw HMAC of data, in constant time.
func (s *Signer) VerifyRaw(data string, sig []byte) bool {
	return len(sig) == s.Size() && hmac.Equal(sig, s.signString(data))
}

// SignChannel returns "id.signature", the form of a shared channel.
func (s *Signer) SignChannel(id ID) string {
	h := id.String()
	return h + "." + s.SignHex(h)
}

// SignPrivate returns "private:public.signature", the form of a private
// channel with its public id (protocol version 4).
func (s *Signer) SignPrivate(priv, pub ID) string {
	data := priv.String() + ":" + pub.String()
	return data + "." + s.SignHex(data)
}

// publicPrefix is what Bitrix prepends to a public id before signing it, so
// that a public signature never validates the id as a subscribable channel.
const publicPrefix = "public:"

// SignPublic returns "public.signature", the form other clients address a
// user's public channel with.
func (s *Signer) SignPublic(pub ID) string {
	h := pub.String()
	return h + "." + s.SignHex(publicPrefix+h)
}

// VerifyPublic checks the raw signature a protobuf receiver carries for a
// public id.
func (s *Signer) VerifyPublic(pub ID, sig []byte) bool {
	return s.VerifyRaw(publicPrefix+pub.String(), sig)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
