package realtime

import "testing"

// TestHundredConnectionsPerPrivateChannel is what Push server 2.x's
// 103-connection test means: with the default limit of 100, the three
// oldest of 103 connections on one private channel are closed with 4029,
// and the newest 100 still receive.
func TestHundredConnectionsPerPrivateChannel(t *testing.T) {
	ts := newTestServer(t, nil) // MaxConnPerChannel: 100, the reference's
	priv, pub := newChannel(t), newChannel(t)
	id := ts.signer.SignPrivate(priv, pub)
	clients := make([]*binClient, 103)
	for i := range clients {
		clients[i] = ts.dialBinary(t, id, "")
		// In order: the limit closes the oldest, so each must be counted
		// before the next arrives.
		ts.waitSubscribers(t, priv, min(i+1, 100))
	}
	for i, c := range clients[:3] {
		if ce := c.waitClosed(t); ce.Code != 4029 || ce.Reason != "4029: Too many connections" {
			t.Fatalf("connection %d closed with %d %q, want 4029", i, ce.Code, ce.Reason)
		}
	}
	ts.publish(t, `{"to":"the 100"}`, priv)
	for i, c := range clients[3:] {
		if m := c.next(t); m.GetBody() != `{"to":"the 100"}` {
			t.Fatalf("connection %d got %v", i+3, m)
		}
	}
	if n := ts.hub.Subscribers(priv); n != 100 {
		t.Fatalf("%d subscribers, want 100", n)
	}
}
