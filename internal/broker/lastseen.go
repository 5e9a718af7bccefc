package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

// Presence is the part of a Broker that knows whether users are online.
type Presence interface {
	Online(ctx context.Context, channels []channel.ID) ([]int, error)
	LastSeen(ctx context.Context, users []channel.ID) (map[channel.ID]time.Time, error)
}

// UsersLastSeen answers "how long ago was each user online" the way
// protocol version 5 does (docs/protocol-v5.md, "Client methods"): 0 for a
// user with a connection now, else the seconds since the user was last seen;
// users never seen are left out, which tells the clients to ask elsewhere.
// The push server's getUsersLastSeen and the REST method
// pull.api.user.getLastSeen share it.
func UsersLastSeen(ctx context.Context, p Presence, tenant string, users []int64, now time.Time) (map[int64]int64, error) {
	presence := make([]channel.ID, len(users))
	userChans := make([]channel.ID, len(users))
	for i, u := range users {
		presence[i] = channel.Presence(tenant, u)
		userChans[i] = channel.User(tenant, u)
	}
	online, err := p.Online(ctx, presence)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	seen, err := p.LastSeen(ctx, userChans)
	if err != nil {
		return nil, fmt.Errorf("last seen: %w", err)
	}
	out := make(map[int64]int64, len(users))
	for i, u := range users {
		switch t, ok := seen[userChans[i]]; {
		case online[i] > 0:
			out[u] = 0
		case ok:
			out[u] = max(int64(now.Sub(t)/time.Second), 0)
		}
	}
	return out, nil
}
