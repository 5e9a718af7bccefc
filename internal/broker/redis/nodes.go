package redis

import (
	"context"
	"fmt"
	"strconv"
)

// LiveNodes returns how many nodes of the cluster are alive: those whose
// last heartbeat is within the window Online counts connections for.
func (b *Broker) LiveNodes(ctx context.Context) (int, error) {
	oldest := b.now().Add(-3 * b.opt.Heartbeat).UnixMilli()
	n, err := b.client.Do(ctx, b.client.B().Zcount().Key(b.keys.Key("nodes")).
		Min(strconv.FormatInt(oldest, 10)).Max("+inf").Build()).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("live nodes: redis: %w", err)
	}
	return int(n), nil
}
