package realtime

import (
	"sync"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
)

// connLimit caps the connections of one private channel (one user's tabs
// and devices, the channels that carry a public id), as Push server 2.x
// does: when a new connection would exceed the cap, the oldest is closed
// with 4029. It keeps a buggy or hostile client from holding thousands of
// sockets on one user's channel.
type connLimit[T comparable] struct {
	max int
	mu  sync.Mutex
	// byChannel lists connections oldest first. Lists are short (≤ max),
	// so removal by scan is cheaper than any index.
	byChannel map[channel.ID][]T
}

func newConnLimit[T comparable](max int) *connLimit[T] {
	return &connLimit[T]{max: max, byChannel: make(map[channel.ID][]T)}
}

// add registers s, subscribed to subs, and returns the connections it
// pushes over the cap.
func (l *connLimit[T]) add(s T, subs []hub.Subscription) (evicted []T) {
	if l.max <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, sub := range subs {
		if !sub.HasPublic {
			continue
		}
		list := append(l.byChannel[sub.Channel], s)
		for len(list) > l.max {
			evicted = append(evicted, list[0])
			list = list[1:]
		}
		l.byChannel[sub.Channel] = list
	}
	return evicted
}

// remove forgets s, subscribed to subs.
func (l *connLimit[T]) remove(s T, subs []hub.Subscription) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, sub := range subs {
		if !sub.HasPublic {
			continue
		}
		list := l.byChannel[sub.Channel]
		for i, x := range list {
			if x == s {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(l.byChannel, sub.Channel)
		} else {
			l.byChannel[sub.Channel] = list
		}
	}
}
