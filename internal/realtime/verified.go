package realtime

import (
	"slices"
	"sync"

	"github.com/pushpull/pushpull/internal/channel"
)

// A long-polling client sends the same CHANNEL_ID with every poll, once per
// delivery, and every element's HMAC would be checked each time. The lists
// that passed are remembered, per signer, so that a poll repeats only a map
// lookup; a list that failed is never remembered and fails again in full.

// Bounds of verifiedLists: entries, and the length of a list kept (a client
// sends a few channels, ~100 bytes each; a longer list is checked each time).
const (
	maxVerifiedLists   = 8192
	maxVerifiedListLen = 2048
)

// verifiedLists remembers CHANNEL_ID lists whose signatures a signer has
// verified. The zero value is ready to use.
type verifiedLists struct {
	mu sync.RWMutex
	m  map[verifiedKey][]channel.Element
}

// verifiedKey is a list as the client sent it and the signer that verified
// it: a portal's new key (shared mode) or a reloaded server key is another
// signer, so a list signed with the old key is checked anew.
type verifiedKey struct {
	signer *channel.Signer
	raw    string
}

// get returns a copy of the elements of raw, verified before by signer.
// The copy is the caller's: sessions scope and keep their elements.
func (v *verifiedLists) get(signer *channel.Signer, raw string) ([]channel.Element, bool) {
	v.mu.RLock()
	elems, ok := v.m[verifiedKey{signer, raw}]
	v.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return slices.Clone(elems), true
}

// put remembers that raw, verified by signer, holds elems. When full, an
// entry picked at random (map order) makes room: bounded memory, and a
// client that polls often is soon back.
func (v *verifiedLists) put(signer *channel.Signer, raw string, elems []channel.Element) {
	if len(raw) > maxVerifiedListLen {
		return
	}
	kept := slices.Clone(elems)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = make(map[verifiedKey][]channel.Element)
	}
	if len(v.m) >= maxVerifiedLists {
		for k := range v.m {
			delete(v.m, k)
			break
		}
	}
	v.m[verifiedKey{signer, raw}] = kept
}
