package realtime

import (
	"github.com/gobwas/ws"
)

// maxMissed is how many pings may go without any frame back before the
// peer is taken for dead (docs/protocol-v5.md, "Decisions").
const maxMissed = 3

// rpcPingLoop sends version 5 connections the text ping their clients
// expect: a client that gets none for 20 s takes the connection for stuck
// and reconnects. A peer that has sent nothing, not even a pong, for
// maxMissed pings is dropped.
func (s *Server) rpcPingLoop() {
	s.pingEvery(s.opt.RPCPingInterval, s.rpcPingDone,
		func(sess *session) bool { return sess.ws != nil && sess.rpc != nil },
		func(sess *session) { sess.ws.rpcPing(sess) })
}

func (c *wsConn) rpcPing(sess *session) {
	if c.socket() == nil {
		return // still in its handshake: registered, but not yet able to answer
	}
	if c.alive.Swap(false) {
		sess.rpc.missed.Store(0)
	} else if sess.rpc.missed.Add(1) >= maxMissed {
		sess.srv.log.Debug("dropping JSON-RPC websocket: no pong", "pings", maxMissed)
		sess.kill("ping timeout")
		return
	}
	// A writer busy on the socket would hold the ping up; skip a round
	// rather than stall the loop (clients wait two intervals).
	if !c.writeMu.TryLock() {
		return
	}
	c.writeMu.Unlock()
	if err := c.writeFrame(ws.NewTextFrame(framePing), sess.srv.opt.WriteTimeout); err != nil {
		sess.kill("ping failed")
	}
}
