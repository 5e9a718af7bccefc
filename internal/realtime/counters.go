package realtime

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/stats"
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
	// held counts WebSocket writes held back by the merge delay.
	held atomic.Uint64
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

// recovered counts a connection's recovery from a mid and what it replayed.
func (c *counters) recovered(recover bool, replayed int) {
	if recover {
		c.recoveries.Add(1)
		c.replayed.Add(uint64(replayed))
	}
}

// writeFailed counts a WebSocket write that failed, unless the socket was
// closed on purpose (a cut slow consumer, a shutdown): that drop is counted
// where it was decided.
func (c *counters) writeFailed(err error) {
	if !errors.Is(err, net.ErrClosed) {
		c.drops[dropWriteError].Add(1)
	}
}
