package realtime

import (
	"testing"

	"github.com/pushpull/pushpull/internal/channel"
)

// A connection is registered, and so reached by the ping loops, before its
// handshake completes. A tick in that window must leave it alone: it has no
// socket to ping yet and has had no chance to answer. (Pinging once the
// handshake is done is what TestDeadConnectionsAreDropped and
// TestV5PingsAndDeadPeers check.)
func TestPingSparesAConnectionStillInItsHandshake(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, rpc := range []bool{false, true} {
		var p protocol = textProtocol{}
		if rpc {
			p = &rpcConn{}
		}
		sess := newSession(ts.rt, []channel.Element{{ID: newChannel(t)}}, p)
		c := &wsConn{sess: sess}
		sess.t = c
		for range 2 * maxMissed {
			c.ping()
		}
		if c.done.Load() {
			t.Fatalf("rpc=%v: a connection in its handshake was dropped by the ping loop", rpc)
		}
	}
}
