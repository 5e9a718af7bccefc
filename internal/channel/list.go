package channel

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of ParseList, kept apart so that callers can map them to the
// protocol's codes (docs/protocol.md, "Errors"): a subscriber gets 4010 for
// any of them, a publisher 4017, 4018 or 4010. Returned errors wrap them with
// the detail.
var (
	ErrNoChannels      = errors.New("no channels")
	ErrTooManyChannels = errors.New("too many channels")
	ErrWrongChannel    = errors.New("wrong channel id")
)

// Element is one CHANNEL_ID entry.
type Element struct {
	// ID is the channel listened on or published to: for "private:public"
	// the private id.
	ID ID
	// Public is the paired public id of a private channel, if HasPublic.
	Public    ID
	HasPublic bool
}

// ListOptions say how strict ParseList is.
type ListOptions struct {
	// Signer verifies signatures; with none, every signed element (and so
	// every private:public pair) is refused rather than trusted unchecked.
	Signer *Signer
	// RequireSignature is set for subscribers. Trusted backends may send bare
	// ids, but a signature they send must still be right, and a
	// "private:public" pair is always signed: it is what makes the public id
	// an alias of the private channel.
	RequireSignature bool
	// MaxElements > 0 refuses longer lists with ErrTooManyChannels. Elements
	// are counted before duplicates collapse, since each costs an HMAC.
	MaxElements int
}

// ParseList parses a CHANNEL_ID value (already URL-decoded): elements joined
// by "/", each "id", "id.signature" or "private:public.signature" with the
// v4 server's syntax.
//
// Empty elements are skipped: clients join the private and shared ids and
// either may be missing, which leaves a leading, trailing or doubled "/".
// Elements naming the same ID collapse into the first one, keeping the order
// (so a later "private:public" does not add its public id to an earlier bare
// "private"). One bad element refuses the whole list, as on the reference
// servers, so a caller never acts on half of what a client asked for.
//
// The element count is checked against MaxElements before any HMAC is
// computed, so a hostile list costs at most MaxElements verifications.
func ParseList(s string, opt ListOptions) ([]Element, error) {
	n := countElements(s)
	if n == 0 {
		return nil, ErrNoChannels
	}
	if opt.MaxElements > 0 && n > opt.MaxElements {
		return nil, fmt.Errorf("%w: %d elements, at most %d", ErrTooManyChannels, n, opt.MaxElements)
	}
	out := make([]Element, 0, min(n, maxPrealloc))
	var seen map[ID]struct{} // only for long lists; short ones are scanned
	i := 0
	for part := range strings.SplitSeq(s, "/") {
		if part == "" {
			continue
		}
		e, err := parseElement(part, opt)
		if err != nil {
			return nil, fmt.Errorf("%w: element %d %.80q: %w", ErrWrongChannel, i, part, err)
		}
		i++
		if seen != nil {
			if _, dup := seen[e.ID]; dup {
				continue
			}
			seen[e.ID] = struct{}{}
		} else if containsID(out, e.ID) {
			continue
		} else if len(out) == linearDedup {
			seen = make(map[ID]struct{}, 2*linearDedup)
			for _, x := range out {
				seen[x.ID] = struct{}{}
			}
			seen[e.ID] = struct{}{}
		}
		out = append(out, e)
	}
	return out, nil
}

const (
	// maxPrealloc keeps an unbounded hostile list from reserving memory
	// before its elements have been checked.
	maxPrealloc = 128
	// linearDedup is the list length up to which duplicates are found by
	// scanning, cheaper than a map for the two or three ids clients send.
	linearDedup = 16
)

func countElements(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '/' && (i == 0 || s[i-1] == '/') {
			n++
		}
	}
	return n
}

func containsID(es []Element, id ID) bool {
	for _, e := range es {
		if e.ID == id {
			return true
		}
	}
	return false
}

// Signature lengths the v4 pattern admits, in hex: md5 to sha512. Only the
// configured algorithm's length can verify, but any of these is well-formed.
const (
	minSignatureHex = 32
	maxSignatureHex = 128
)

// elementError is an element's defect; ParseList wraps it in ErrWrongChannel.
type elementError string

func (e elementError) Error() string { return string(e) }

const (
	errSyntax      elementError = "not id[:public][.signature] in lower-case hex"
	errSignature   elementError = "bad signature"
	errNotSigned   elementError = "not signed"
	errPairNoSign  elementError = "private:public pair not signed"
	errNoSignerKey elementError = "signed, but no key to verify with"
)

// ErrSignature is the defect of an element whose signature does not verify;
// ParseList's ErrWrongChannel errors wrap it, so that a forged or stale
// signature can be told from a malformed id (the metrics count them apart).
var ErrSignature error = errSignature

// parseElement parses one element by position, which the fixed-width v4
// syntax allows: id(32) [":" public(32)] ["." signature(32..128)].
func parseElement(part string, opt ListOptions) (Element, error) {
	var e Element
	if len(part) < 2*IDLen || !decodeLowerHex(e.ID[:], part[:2*IDLen]) {
		return Element{}, errSyntax
	}
	body, rest := part[:2*IDLen], part[2*IDLen:]
	if len(rest) > 0 && rest[0] == ':' {
		if len(rest) < 1+2*IDLen || !decodeLowerHex(e.Public[:], rest[1:1+2*IDLen]) {
			return Element{}, errSyntax
		}
		e.HasPublic = true
		body, rest = part[:len(body)+1+2*IDLen], rest[1+2*IDLen:]
	}
	if len(rest) == 0 {
		switch {
		case e.HasPublic:
			return Element{}, errPairNoSign
		case opt.RequireSignature:
			return Element{}, errNotSigned
		}
		return e, nil
	}
	sig := rest[1:]
	if rest[0] != '.' || len(sig) < minSignatureHex || len(sig) > maxSignatureHex || !isLowerHex(sig) {
		return Element{}, errSyntax
	}
	if opt.Signer == nil {
		return Element{}, errNoSignerKey
	}
	if !opt.Signer.Verify(body, sig) {
		return Element{}, errSignature
	}
	return e, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if _, ok := lowerHexValue(s[i]); !ok {
			return false
		}
	}
	return true
}
