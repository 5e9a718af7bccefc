package realtime

import (
	"sync/atomic"

	"github.com/pushpull/pushpull/internal/stats"
)

// Metrics is a reading of the server's counters, for the metrics exporter.
type Metrics struct {
	// Connections are the open subscriber connections by transport and
	// protocol (every combination, zeros included).
	Connections []ConnectionCount
	// Handshakes are subscribe requests by transport (a long poll is one
	// per poll); HandshakeFailures those refused, by reason.
	Handshakes        []Count
	HandshakeFailures []Count
	// Published are messages published through this server's push routes,
	// by route.
	Published []Count
	// Drops are connections cut with deliveries on their way, by reason.
	Drops []Count
	// Recoveries are connections that asked to recover from a mid, and
	// Replayed the messages sent to them from history.
	Recoveries, Replayed uint64
	// WritesHeld are WebSocket writes held back to merge with what followed
	// (Options.WriteMergeDelay).
	WritesHeld uint64
	// Latency is publish→socket in nanoseconds; WriteBatch the deliveries
	// per socket write; both over a sample of writes (counters.wrote).
	Latency, WriteBatch stats.Snapshot
}

// Count is one labelled counter.
type Count struct {
	Label string
	Value uint64
}

// ConnectionCount is the open connections of one transport and protocol.
type ConnectionCount struct {
	Transport, Protocol string
	Value               int
}

// Metrics reads the counters. Connections are counted by walking the
// sessions under their lock, which costs a scrape, not a connect.
func (s *Server) Metrics() Metrics {
	c := s.metrics
	var conns [numTransports][len(protocolNames)]int
	s.sessMu.Lock()
	for m := range s.sessions {
		sess, ok := m.(*session)
		if !ok {
			continue
		}
		t := transportLongPoll
		if sess.t.streams() {
			t = transportWebSocket
		}
		if slot := sess.format.slot; slot >= 0 && slot < len(protocolNames) {
			conns[t][slot]++
		}
	}
	s.sessMu.Unlock()
	m := Metrics{
		Recoveries: c.recoveries.Load(),
		Replayed:   c.replayed.Load(),
		WritesHeld: c.held.Load(),
		Latency:    c.latency.Snapshot(),
		WriteBatch: c.batch.Snapshot(),
	}
	for t, byProto := range conns {
		for p, n := range byProto {
			m.Connections = append(m.Connections, ConnectionCount{transportNames[t], protocolNames[p], n})
		}
		m.Handshakes = append(m.Handshakes, Count{transportNames[t], c.handshakes[t].Load()})
	}
	m.HandshakeFailures = readCounts(c.handshakeFailures[:], handshakeReasonNames[:])
	m.Published = readCounts(c.published[:], routeNames[:])
	m.Drops = readCounts(c.drops[:], dropReasonNames[:])
	return m
}

func readCounts(cs []atomic.Uint64, names []string) []Count {
	out := make([]Count, len(cs))
	for i := range cs {
		out[i] = Count{names[i], cs[i].Load()}
	}
	return out
}
