package redis

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/channel"
)

// Users' last-seen times are one hash, "lastseen": user channel in hex ->
// unix seconds. It grows with the number of users, not with traffic, and is
// shared by every node so getUsersLastSeen answers the same everywhere.

// SetLastSeen implements broker.Broker.
func (b *Broker) SetLastSeen(ctx context.Context, seen map[channel.ID]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	cmd := b.client.B().Hset().Key(b.keys.Key("lastseen")).FieldValue()
	for u, t := range seen {
		cmd = cmd.FieldValue(hex.EncodeToString(u[:]), strconv.FormatInt(t.Unix(), 10))
	}
	if err := b.client.Do(ctx, cmd.Build()).Error(); err != nil {
		return fmt.Errorf("set last seen: redis: %w", err)
	}
	return nil
}

// LastSeen implements broker.Broker.
func (b *Broker) LastSeen(ctx context.Context, users []channel.ID) (map[channel.ID]time.Time, error) {
	out := make(map[channel.ID]time.Time, len(users))
	if len(users) == 0 {
		return out, nil
	}
	fields := make([]string, len(users))
	for i, u := range users {
		fields[i] = hex.EncodeToString(u[:])
	}
	vals, err := b.client.Do(ctx, b.client.B().Hmget().Key(b.keys.Key("lastseen")).Field(fields...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("last seen: redis: %w", err)
	}
	for i, v := range vals {
		sec, err := v.AsInt64()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("last seen of %s: %w", fields[i], err)
		}
		out[users[i]] = time.Unix(sec, 0)
	}
	return out, nil
}
