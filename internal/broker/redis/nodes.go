package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"
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

// Node is one pushpull node of the cluster, as its heartbeats show it.
type Node struct {
	ID string `json:"id"`
	// LastHeartbeat is when the node last refreshed its presence.
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// Alive: the node beat within three heartbeats, so its connections
	// count in presence (as LiveNodes counts). Nodes silent for longer stay
	// listed until the heartbeat script forgets them (ten heartbeat TTLs).
	Alive bool `json:"alive"`
	// Self is the node answering.
	Self bool `json:"self"`
}

// NodeID is this node's id in presence.
func (b *Broker) NodeID() string { return b.node }

// Nodes lists the cluster's nodes by their last heartbeat, newest first.
func (b *Broker) Nodes(ctx context.Context) ([]Node, error) {
	entries, err := b.client.Do(ctx, b.client.B().Zrevrange().Key(b.keys.Key("nodes")).Start(0).Stop(-1).Withscores().Build()).AsZScores()
	if err != nil {
		return nil, fmt.Errorf("nodes: redis: %w", err)
	}
	oldest := b.now().Add(-3 * b.opt.Heartbeat)
	nodes := make([]Node, 0, len(entries))
	for _, e := range entries {
		at := time.UnixMilli(int64(e.Score))
		nodes = append(nodes, Node{ID: e.Member, LastHeartbeat: at, Alive: !at.Before(oldest), Self: e.Member == b.node})
	}
	return nodes, nil
}
