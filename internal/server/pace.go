package server

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/clientaddr"
)

// pacer spaces out one client address's large requests: rate a second on
// average, twice that at once. The admission's slots bound how many large
// requests run at once, but not how often: a client that sends the next
// one as soon as the last is answered gets the whole of those slots, and
// the faster the server answers, the more it sends. Paced, such a client
// waits for its turn instead, and what it costs the server no longer grows
// with how fast the server is.
//
// Addresses are counted by clientaddr.Key, as behind a trusted proxy's
// X-Forwarded-For (forwardedFor).
type pacer struct {
	rate  float64 // requests a second; burst is twice it
	now   func() time.Time
	mu    sync.Mutex
	addrs map[netip.Prefix]*paceState
}

type paceState struct {
	tokens float64 // may go below 0: requests already waiting their turn
	at     time.Time
}

// maxPacedAddrs bounds the pacer's memory; past it, addresses whose budget
// has refilled are forgotten first, and if none has, the new address is
// not paced.
const maxPacedAddrs = 65536

func newPacer(rate int, now func() time.Time) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{rate: float64(rate), now: now, addrs: make(map[netip.Prefix]*paceState)}
}

// reserve takes r's address's next turn and returns how long r must wait
// for it. ok is false when the turn is more than max away: the address is
// that far behind, and r is to be refused (its turn is not taken).
func (p *pacer) reserve(r *http.Request, max time.Duration) (wait time.Duration, ok bool) {
	if p == nil {
		return 0, true
	}
	key, known := clientaddr.Key(r.RemoteAddr)
	if !known {
		return 0, true
	}
	return p.reserveKey(key, max)
}

// allAddresses is the one key of a pacer that paces every address together.
var allAddresses = netip.Prefix{}

// reserveAll is reserve for a pacer of all addresses together.
func (p *pacer) reserveAll(max time.Duration) (wait time.Duration, ok bool) {
	if p == nil {
		return 0, true
	}
	return p.reserveKey(allAddresses, max)
}

func (p *pacer) reserveKey(key netip.Prefix, max time.Duration) (wait time.Duration, ok bool) {
	burst := 2 * p.rate
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.addrs[key]
	if st == nil {
		if len(p.addrs) >= maxPacedAddrs && !p.forgetRefilled(now) {
			return 0, true
		}
		st = &paceState{tokens: burst, at: now}
		p.addrs[key] = st
	}
	st.tokens = min(burst, st.tokens+now.Sub(st.at).Seconds()*p.rate)
	st.at = now
	if st.tokens >= 1 {
		st.tokens--
		return 0, true
	}
	wait = time.Duration((1 - st.tokens) / p.rate * float64(time.Second))
	if wait > max {
		return wait, false
	}
	st.tokens--
	return wait, true
}

// forgetRefilled drops the addresses whose budget is whole again; it
// reports whether any was. Called with mu held.
func (p *pacer) forgetRefilled(now time.Time) bool {
	n := len(p.addrs)
	for k, st := range p.addrs {
		if st.tokens+now.Sub(st.at).Seconds()*p.rate >= 2*p.rate {
			delete(p.addrs, k)
		}
	}
	return len(p.addrs) < n
}
