package redis

import (
	"context"
	"testing"

	"github.com/pushpull/pushpull/internal/broker/brokertest"
)

// TestNodesListsTheCluster: every node sees the others by their
// heartbeats, knows itself, and a node that closes leaves the list.
func TestNodesListsTheCluster(t *testing.T) {
	prefix := randomPrefix(t)
	a := node(t, shared.URL(), prefix, brokertest.NewRecorder(), nil)
	b := node(t, shared.URL(), prefix, brokertest.NewRecorder(), nil)
	other := node(t, shared.URL(), randomPrefix(t), brokertest.NewRecorder(), nil)
	ctx := context.Background()

	nodes, err := a.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]Node{}
	for _, n := range nodes {
		seen[n.ID] = n
	}
	if len(nodes) != 2 || !seen[a.NodeID()].Self || seen[b.NodeID()].Self || !seen[a.NodeID()].Alive || !seen[b.NodeID()].Alive {
		t.Fatalf("a sees %+v; want itself and b, alive, and not %s of another cluster", nodes, other.NodeID())
	}
	if seen[b.NodeID()].LastHeartbeat.IsZero() {
		t.Fatalf("b's heartbeat time is missing: %+v", seen[b.NodeID()])
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	nodes, err = a.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 1 || nodes[0].ID != a.NodeID() {
		t.Fatalf("after b closed a sees %+v", nodes)
	}
}
