package redis

import (
	"time"

	"github.com/pushpull/pushpull/internal/stats"
)

// Stats is what the node counts of its use of Redis, for the metrics.
type Stats struct {
	// RoundTrip is the time, in nanoseconds, of each publish script and
	// each heartbeat: what a publisher waits for Redis, and a probe that
	// runs even when nothing is published.
	RoundTrip stats.Snapshot
	// Received is the messages this node received from Redis (Pub/Sub, or
	// the catch-up after a reconnect) and handed to its hub. Every message
	// to a channel with a local connection arrives this way, the node's own
	// publishes included.
	Received uint64
	// Reconnects counts Pub/Sub connections that were up and were lost.
	Reconnects uint64
	// Healthy is Healthy() == nil.
	Healthy bool
}

// Stats reads the counters.
func (b *Broker) Stats() Stats {
	return Stats{
		RoundTrip:  b.rtt.Snapshot(),
		Received:   b.received.Load(),
		Reconnects: b.reconnects.Load(),
		Healthy:    b.Healthy() == nil,
	}
}

// newRTTHistogram has buckets from a same-host round trip (~100 µs) to the
// heartbeat's one-second timeout.
func newRTTHistogram() *stats.Histogram {
	us := int64(time.Microsecond)
	return stats.NewHistogram(100*us, 250*us, 500*us, 1000*us, 2500*us, 5000*us, 10000*us,
		25000*us, 50000*us, 100000*us, 250000*us, 500000*us, 1000000*us)
}
