// Package hub is the local fan-out: which of this process's connections listen
// on which channel, which public ids stand for which private channels, and the
// hand-off of one published message to every connection that should get it.
package hub

import (
	"sync"
	"sync/atomic"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// Subscriber is a connection. Deliver must not block: it queues the delivery
// or, when its queue is full, drops the connection (which then recovers by mid).
type Subscriber interface {
	Deliver(d *Delivery)
}

// Subscription is one CHANNEL_ID element of a connection: the channel it
// listens on and, for a private channel, the public id that aliases it.
type Subscription struct {
	Channel   channel.ID
	Public    channel.ID
	HasPublic bool
}

// shardCount spreads the channel map over several locks so that publishes to
// different channels and connects do not contend. A power of two.
const shardCount = 64

// Hub is safe for concurrent use.
type Hub struct {
	shards [shardCount]shard

	aliasMu sync.RWMutex
	aliases map[channel.ID]alias

	// delivered counts hand-offs to subscribers, for the metrics: one add
	// per (message, channel), not per subscriber.
	delivered atomic.Uint64
}

type shard struct {
	mu   sync.RWMutex
	subs map[channel.ID]map[Subscriber]struct{}
}

// alias maps a public id to its private channel, counted by the connections
// that declared it, so it disappears with the last of them.
type alias struct {
	private channel.ID
	refs    int
}

// New returns an empty hub.
func New() *Hub {
	h := &Hub{aliases: make(map[channel.ID]alias)}
	for i := range h.shards {
		h.shards[i].subs = make(map[channel.ID]map[Subscriber]struct{})
	}
	return h
}

func (h *Hub) shard(ch channel.ID) *shard {
	// Channel ids are md5 output, so any byte is evenly spread.
	return &h.shards[ch[0]&(shardCount-1)]
}

// Attach adds s to its subscriptions' channels and registers their public
// aliases. It returns the channels that had no local subscriber before.
func (h *Hub) Attach(s Subscriber, subs []Subscription) (first []channel.ID) {
	for _, sub := range subs {
		sh := h.shard(sub.Channel)
		sh.mu.Lock()
		set := sh.subs[sub.Channel]
		if set == nil {
			set = make(map[Subscriber]struct{}, 1)
			sh.subs[sub.Channel] = set
			first = append(first, sub.Channel)
		}
		set[s] = struct{}{}
		sh.mu.Unlock()
	}
	h.aliasMu.Lock()
	for _, sub := range subs {
		if sub.HasPublic {
			a := h.aliases[sub.Public]
			// A public id is signed together with its private id, so every
			// connection declares the same pairing.
			h.aliases[sub.Public] = alias{private: sub.Channel, refs: a.refs + 1}
		}
	}
	h.aliasMu.Unlock()
	return first
}

// Detach undoes Attach. It returns the channels left with no local subscriber.
func (h *Hub) Detach(s Subscriber, subs []Subscription) (last []channel.ID) {
	for _, sub := range subs {
		sh := h.shard(sub.Channel)
		sh.mu.Lock()
		if set, ok := sh.subs[sub.Channel]; ok {
			delete(set, s)
			if len(set) == 0 {
				delete(sh.subs, sub.Channel)
				last = append(last, sub.Channel)
			}
		}
		sh.mu.Unlock()
	}
	h.aliasMu.Lock()
	for _, sub := range subs {
		if !sub.HasPublic {
			continue
		}
		if a, ok := h.aliases[sub.Public]; ok {
			if a.refs <= 1 {
				delete(h.aliases, sub.Public)
			} else {
				a.refs--
				h.aliases[sub.Public] = a
			}
		}
	}
	h.aliasMu.Unlock()
	return last
}

// Resolve returns the channel a receiver reaches on this node: itself, or for
// a public id the private channel it aliases.
func (h *Hub) Resolve(r message.Receiver) (channel.ID, bool) {
	if !r.Public {
		return r.ID, true
	}
	h.aliasMu.RLock()
	a, ok := h.aliases[r.ID]
	h.aliasMu.RUnlock()
	return a.private, ok
}

// Deliver hands m to every local subscriber of its receivers: once per
// channel a subscriber listens on, however many receivers lead there. It
// implements broker.Deliverer.
func (h *Hub) Deliver(m *message.Message) {
	var stack [8]channel.ID
	seen := stack[:0]
	for _, r := range m.Receivers {
		ch, ok := h.Resolve(r)
		if !ok || contains(seen, ch) {
			continue
		}
		seen = append(seen, ch)
		h.deliverTo(m, ch)
	}
}

// contains is a linear scan: receiver lists are at most a hundred long and
// usually one or two, where a map would cost more than it saves.
func contains(ids []channel.ID, id channel.ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func (h *Hub) deliverTo(m *message.Message, ch channel.ID) {
	sh := h.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	set := sh.subs[ch]
	if len(set) == 0 {
		return
	}
	// One Delivery per (message, channel): every subscriber shares its
	// encoded frames.
	d := NewDelivery(m, ch)
	d.SampleMask = sampleMask(len(set))
	for s := range set {
		s.Deliver(d)
	}
	h.delivered.Add(uint64(len(set)))
}

// Delivered returns how many deliveries the hub has handed to subscribers
// (one per message and connection, before a connection's own filters).
func (h *Hub) Delivered() uint64 { return h.delivered.Load() }

// Subscribers returns the number of local subscribers of ch.
func (h *Hub) Subscribers(ch channel.ID) int {
	sh := h.shard(ch)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return len(sh.subs[ch])
}

// Channels returns the number of channels with local subscribers.
func (h *Hub) Channels() int {
	n := 0
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		n += len(sh.subs)
		sh.mu.RUnlock()
	}
	return n
}
