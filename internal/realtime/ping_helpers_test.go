package realtime

import (
	"net"
	"testing"
)

// pingRound does what one tick of a ping loop does (rpc picks the version
// 5 loop). Tests that check a peer which answers is kept run the rounds
// themselves, with the loops' interval set beyond the test, and wait for
// the answer between rounds: a ticker would make the answer race the
// machine's load.
func (ts *testServer) pingRound(rpc bool) {
	for _, sess := range ts.rt.liveSessions(func(s *session) bool {
		_, ws := s.t.(*wsConn)
		return ws && (s.proto.keepalive().text != nil) == rpc
	}) {
		sess.t.ping()
	}
}

// wsSession returns the server's session of the client side conn, once
// its handshake is complete: the session is subscribed before, and a ping
// round then would find no socket, or a peer not yet counted as alive.
func (ts *testServer) wsSession(t *testing.T, client net.Conn) *session {
	t.Helper()
	var found *session
	waitFor(t, "the client's session", func() bool {
		list := ts.rt.liveSessions(func(s *session) bool {
			c, ok := s.t.(*wsConn)
			if !ok {
				return false
			}
			c.connMu.Lock()
			defer c.connMu.Unlock()
			return c.conn != nil && c.conn.RemoteAddr().String() == client.LocalAddr().String() && c.alive.Load()
		})
		if len(list) == 1 {
			found = list[0]
		}
		return found != nil
	})
	return found
}

// waitAnswered waits until the peer of sess has sent something since the
// last ping round: what a round checks.
func waitAnswered(t *testing.T, sess *session) {
	t.Helper()
	waitFor(t, "the peer's answer to the ping", sess.t.(*wsConn).alive.Load)
}
