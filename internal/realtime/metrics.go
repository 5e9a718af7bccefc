package realtime

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/stats"
	"github.com/pushpull/pushpull/internal/token"
)

// counters are what this server counts for the metrics exporter
// (internal/metrics). Every event is an atomic add on a fixed array slot,
// never a lock or a map: several of them sit on the delivery path. The
// exporter reads them through Metrics at scrape time.
type counters struct {
	handshakes        [numTransports]atomic.Uint64
	handshakeFailures [numHandshakeReasons]atomic.Uint64
	published         [numRoutes]atomic.Uint64
	drops             [numDropReasons]atomic.Uint64
	recoveries        atomic.Uint64
	replayed          atomic.Uint64
	// latency is publish→socket in nanoseconds, and batch the deliveries
	// one socket write carries, both for a sample of writes (see wrote).
	latency *stats.Histogram
	batch   *stats.Histogram
}

func newCounters() *counters {
	ms := int64(time.Millisecond)
	return &counters{
		latency: stats.NewHistogram(ms/10, ms/4, ms/2, ms, 2*ms+ms/2, 5*ms, 10*ms, 25*ms, 50*ms, 100*ms,
			250*ms, 500*ms, 1000*ms, 2500*ms, 5000*ms, 10000*ms),
		batch: stats.NewHistogram(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
	}
}

// Transports, by the names the metrics use.
const (
	transportWebSocket = iota
	transportLongPoll
	numTransports
)

var transportNames = [numTransports]string{"websocket", "longpoll"}

// protocolNames name the wire formats by format.slot.
var protocolNames = [4]string{"text", "json", "protobuf", "jsonrpc"}

// Why a subscribe request was refused.
const (
	refusedNoChannels = iota
	refusedTooManyChannels
	refusedBadSignature
	refusedBadChannelID
	refusedBadToken
	refusedExpiredToken
	refusedDraining
	refusedBadUpgrade
	refusedOther
	numHandshakeReasons
)

var handshakeReasonNames = [numHandshakeReasons]string{
	"no_channels", "too_many_channels", "bad_signature", "bad_channel_id", "bad_token", "expired_token",
	"draining", "bad_upgrade", "other",
}

// Where a message was published from.
const (
	routePubText = iota
	routePubBinary
	routeAPI
	routePubWeb
	routeWebSocket
	numRoutes
)

var routeNames = [numRoutes]string{"pub_text", "pub_binary", "api", "pubweb", "websocket"}

// Why a connection was cut while deliveries were on their way to it.
const (
	dropSlowConsumer = iota
	dropWriteError
	dropConnectionLimit
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{"slow_consumer", "write_error", "connection_limit"}

// handshake counts a subscribe request, a WebSocket upgrade or a long poll.
func (c *counters) handshake(upgrade bool) {
	t := transportLongPoll
	if upgrade {
		t = transportWebSocket
	}
	c.handshakes[t].Add(1)
}

// refused counts a subscribe request refused with err (logRefused).
func (c *counters) refused(err error) {
	reason := refusedOther // the broker could not attach it, say
	switch {
	case errors.Is(err, errDraining):
		reason = refusedDraining
	case errors.Is(err, errUpgrade):
		reason = refusedBadUpgrade
	case errors.Is(err, token.ErrExpired):
		reason = refusedExpiredToken
	case errors.Is(err, token.ErrMalformed), errors.Is(err, token.ErrAlgorithm),
		errors.Is(err, token.ErrSignature), errors.Is(err, token.ErrClaims):
		reason = refusedBadToken
	case errors.Is(err, channel.ErrNoChannels):
		reason = refusedNoChannels
	case errors.Is(err, channel.ErrTooManyChannels):
		reason = refusedTooManyChannels
	case errors.Is(err, channel.ErrSignature):
		reason = refusedBadSignature
	case errors.Is(err, channel.ErrWrongChannel), errors.Is(err, errWrongChannelID):
		reason = refusedBadChannelID
	}
	c.handshakeFailures[reason].Add(1)
}

// publishedBy counts a message published by a protobuf RequestBatch.
func (c *counters) publishedBy(who requester) {
	switch {
	case who.trusted:
		c.published[routePubBinary].Add(1)
	case who.source.conn != nil:
		c.published[routeWebSocket].Add(1)
	default:
		c.published[routePubWeb].Add(1)
	}
}

// recovered counts a connection's recovery from a mid and what it replayed.
func (c *counters) recovered(recover bool, replayed int) {
	if recover {
		c.recoveries.Add(1)
		c.replayed.Add(uint64(replayed))
	}
}

// wrote records one socket write of ds to sess, if it is in the sample
// (hub.Delivery.Sampled): its size, and the latency of the oldest live
// message in it (queues are in id order). Writes outside the sample cost a
// hash and a mask; a sampled one reads the clock and updates two shared
// histograms, which on every write of a wide fan-out would cost as much as
// the rest of the delivery without a system call. Replayed messages were
// created before the connection subscribed and are left out: their age is
// the client's absence, not the server's delay.
func (c *counters) wrote(sess *session, ds []*hub.Delivery) {
	// The connection's subscribe time tells it from the others.
	if !ds[0].Sampled(uint64(sess.subscribed.UnixNano())) {
		return
	}
	c.batch.Observe(int64(len(ds)))
	for _, d := range ds {
		if d.Msg.Created.After(sess.subscribed) {
			c.latency.Observe(int64(time.Since(d.Msg.Created)))
			return
		}
	}
}

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

// writeFailed counts a WebSocket write that failed, unless the socket was
// closed on purpose (a cut slow consumer, a shutdown): that drop is counted
// where it was decided.
func (c *counters) writeFailed(err error) {
	if !errors.Is(err, net.ErrClosed) {
		c.drops[dropWriteError].Add(1)
	}
}
