package memory

import (
	"context"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

// SetLastSeen implements broker.Broker.
func (b *Broker) SetLastSeen(_ context.Context, seen map[channel.ID]time.Time) error {
	b.seenMu.Lock()
	defer b.seenMu.Unlock()
	for u, t := range seen {
		b.seen[u] = t.Unix()
	}
	return nil
}

// LastSeen implements broker.Broker.
func (b *Broker) LastSeen(_ context.Context, users []channel.ID) (map[channel.ID]time.Time, error) {
	out := make(map[channel.ID]time.Time, len(users))
	b.seenMu.Lock()
	defer b.seenMu.Unlock()
	for _, u := range users {
		if sec, ok := b.seen[u]; ok {
			out[u] = time.Unix(sec, 0)
		}
	}
	return out, nil
}
