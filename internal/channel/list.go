package channel

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of ParseList. Callers map them to the protocol's codes: subscribers
// get 4010 for any of them.
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
	Signer *Signer
	// RequireSignature is set for subscribers. Trusted backends may send bare
	// ids, but a signature they send must still be right, and a
	// "private:public" pair is always signed: it is what makes the public id
	// an alias of the private channel.
	RequireSignature bool
	// MaxElements > 0 refuses longer lists with ErrTooManyChannels.
	MaxElements int
}

// ParseList parses a CHANNEL_ID value (already URL-decoded): elements joined
// by "/", each "id", "id.signature" or "private:public.signature". Empty
// elements are skipped (clients join the private and shared ids and either
// may be missing); duplicates keep their first place. One bad element refuses
// the whole list, as on the reference servers.
func ParseList(s string, opt ListOptions) ([]Element, error) {
	if opt.MaxElements > 0 && strings.Count(s, "/") >= opt.MaxElements {
		// Count non-empty elements only when the cheap bound is exceeded.
		n := 0
		for part := range strings.SplitSeq(s, "/") {
			if part != "" {
				n++
			}
		}
		if n > opt.MaxElements {
			return nil, fmt.Errorf("%w: %d elements, at most %d", ErrTooManyChannels, n, opt.MaxElements)
		}
	}
	var out []Element
	for part := range strings.SplitSeq(s, "/") {
		if part == "" {
			continue
		}
		e, err := parseElement(part, opt)
		if err != nil {
			return nil, err
		}
		dup := false
		for _, x := range out {
			if x.ID == e.ID {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoChannels
	}
	return out, nil
}

// maxSignatureHex is the longest signature the v4 pattern admits (sha512).
const maxSignatureHex = 128

func parseElement(part string, opt ListOptions) (Element, error) {
	var e Element
	body, sig, signed := strings.Cut(part, ".")
	if signed && (len(sig) < 32 || len(sig) > maxSignatureHex) {
		return e, fmt.Errorf("%w: %.80q: signature length %d", ErrWrongChannel, part, len(sig))
	}
	priv, pub, pair := strings.Cut(body, ":")
	id, err := ParseID(priv)
	if err != nil {
		return e, fmt.Errorf("%w: %.80q: %w", ErrWrongChannel, part, err)
	}
	e.ID = id
	if pair {
		if e.Public, err = ParseID(pub); err != nil {
			return e, fmt.Errorf("%w: %.80q: public id: %w", ErrWrongChannel, part, err)
		}
		e.HasPublic = true
	}
	switch {
	case signed:
		if opt.Signer == nil || !opt.Signer.Verify(body, sig) {
			return e, fmt.Errorf("%w: %.80q: bad signature", ErrWrongChannel, part)
		}
	case pair || opt.RequireSignature:
		return e, fmt.Errorf("%w: %.80q: not signed", ErrWrongChannel, part)
	}
	return e, nil
}
