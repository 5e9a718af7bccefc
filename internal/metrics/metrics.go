// Package metrics exports pushpull's counters in the Prometheus text format.
// Each server builds its own registry (no global default registry): the Go
// runtime and process collectors, and one collector that reads the parts'
// own counters at scrape time. The parts count with plain atomics where
// events happen, so the delivery path pays no lock, map or label lookup for
// being measured; the translation to Prometheus happens here, once per
// scrape.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/pushpull/pushpull/internal/auth"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/pull"
	"github.com/pushpull/pushpull/internal/push"
	"github.com/pushpull/pushpull/internal/realtime"
	"github.com/pushpull/pushpull/internal/rest"
	"github.com/pushpull/pushpull/internal/stats"
)

// Sources are the parts whose counters are exported. A nil part is left
// out: History in cluster mode (the history is in Redis), Cluster in
// embedded mode.
type Sources struct {
	Realtime *realtime.Server
	Hub      *hub.Hub
	REST     *rest.Server
	Auth     *auth.Service
	Pull     *pull.Service
	Push     *push.Queue
	// History reads the embedded broker's stored history.
	History func() History
	// Cluster reads the Redis broker's counters.
	Cluster func() Cluster
	Log     *slog.Logger
}

// History is the size of the stored history.
type History struct {
	Messages int64 // stored entries, one per message and channel
	Bytes    int64 // the stored messages' size estimate
}

// Cluster is what a node counts of its use of Redis.
type Cluster struct {
	RoundTrip  stats.Snapshot // nanoseconds
	Received   uint64
	Reconnects uint64
	Healthy    bool
}

// Metrics is one server's registry.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger
}

// New builds the registry over src.
func New(src Sources) *Metrics {
	if src.Log == nil {
		src.Log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(src),
	)
	return &Metrics{reg: reg, log: src.Log}
}

// Handler serves the text exposition. A part that cannot be read (the
// registry, for the push queue depth) leaves its family out and is logged;
// the rest is still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes are rare and small; one at a time bounds what a
		// misconfigured scraper can cost.
		MaxRequestsInFlight: 1,
		Timeout:             10 * time.Second,
	})
}

// Gather returns the current families, for tests and tools that want the
// values without HTTP.
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) { return m.reg.Gather() }

// pushQueueTimeout bounds the registry query behind the queue depth, so a
// slow registry cannot hold a scrape.
const pushQueueTimeout = 2 * time.Second

// collector reads the parts' counters at scrape time.
type collector struct {
	src   Sources
	names []string // of the families below

	connections, handshakes, handshakeFailures                  *prometheus.Desc
	channels, historyMessages, historyBytes                     *prometheus.Desc
	published, deliveries, drops, recoveries, replayed          *prometheus.Desc
	latency, writeBatch, writesHeld                             *prometheus.Desc
	restCalls, restLatency, grants                              *prometheus.Desc
	pushDepth, pushAttempts, pushFailures, pushDropped          *prometheus.Desc
	redisRoundTrip, redisReconnects, redisHealthy, clusterRecvd *prometheus.Desc
}

func newCollector(src Sources) *collector {
	c := &collector{src: src}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		c.names = append(c.names, "pushpull_"+name)
		return prometheus.NewDesc("pushpull_"+name, help, labels, nil)
	}
	c.connections = desc("connections", "Open subscriber connections.", "transport", "protocol")
	c.handshakes = desc("handshakes_total", "Subscribe requests (a long poll is one per poll).", "transport")
	c.handshakeFailures = desc("handshake_failures_total", "Subscribe requests refused, by reason.", "reason")
	c.channels = desc("channels", "Channels with at least one subscriber on this node.")
	c.historyMessages = desc("history_messages", "Stored history entries, one per message and channel (embedded broker).")
	c.historyBytes = desc("history_bytes", "Estimated memory of the stored history (embedded broker).")
	c.published = desc("messages_published_total", "Messages published through this node, by route.", "route")
	c.deliveries = desc("deliveries_total", "Messages handed to subscriber connections, one per message and connection.")
	c.drops = desc("connection_drops_total", "Connections cut while deliveries were on their way to them, by reason; the client recovers by mid.", "reason")
	c.recoveries = desc("recoveries_total", "Connections that asked to recover from a message id.")
	c.replayed = desc("messages_replayed_total", "Messages sent from history to recovering connections.")
	c.latency = desc("publish_to_socket_seconds", "Time from accepting a publish to the socket write that carries it, for the oldest live message in it; over a sample of writes.")
	c.writeBatch = desc("socket_write_deliveries", "Deliveries carried by one socket write (WebSocket message or long-poll answer); over a sample of writes.")
	c.writesHeld = desc("websocket_writes_held_total", "WebSocket writes held back by --write-merge-delay to leave with the messages that followed.")
	c.restCalls = desc("rest_calls_total", "REST calls by method and outcome (ok, or the error code answered).", "method", "outcome")
	c.restLatency = desc("rest_call_duration_seconds", "Time from a REST request's arrival to its answer written.", "method")
	c.grants = desc("oauth_grants_total", "OAuth token requests by grant type and outcome (ok, or the OAuth error code).", "grant_type", "outcome")
	c.pushDepth = desc("push_queue_depth", "Mobile push jobs waiting in the registry, due or not (shared by a cluster).")
	c.pushAttempts = desc("push_attempts_total", "Mobile push deliveries tried by this node.")
	c.pushFailures = desc("push_failures_total", "Mobile push deliveries that failed (retried unless dropped).")
	c.pushDropped = desc("push_dropped_total", "Mobile push jobs given up after their last attempt.")
	c.redisRoundTrip = desc("redis_round_trip_seconds", "Round trips of the publish script and the heartbeat to Redis.")
	c.redisReconnects = desc("redis_reconnects_total", "Pub/Sub connections to Redis lost and tried again.")
	c.redisHealthy = desc("redis_healthy", "1 while the node reaches Redis (Pub/Sub up, last heartbeat answered), else 0.")
	c.clusterRecvd = desc("cluster_messages_received_total", "Messages received from Redis (Pub/Sub or catch-up) and handed to the local hub.")
	return c
}

// FamilyNames lists the pushpull_ metric families a server may export (the
// cluster ones only with --redis), for tools that check names against
// them, such as the dashboard's test.
func FamilyNames() []string { return newCollector(Sources{}).names }

func (c *collector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{
		c.connections, c.handshakes, c.handshakeFailures, c.channels, c.historyMessages, c.historyBytes,
		c.published, c.deliveries, c.drops, c.recoveries, c.replayed, c.latency, c.writeBatch, c.writesHeld,
		c.restCalls, c.restLatency, c.grants, c.pushDepth, c.pushAttempts, c.pushFailures, c.pushDropped,
		c.redisRoundTrip, c.redisReconnects, c.redisHealthy, c.clusterRecvd,
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	src := c.src
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if rt := src.Realtime; rt != nil {
		m := rt.Metrics()
		for _, cc := range m.Connections {
			gauge(c.connections, float64(cc.Value), cc.Transport, cc.Protocol)
		}
		for _, h := range m.Handshakes {
			counter(c.handshakes, h.Value, h.Label)
		}
		for _, f := range m.HandshakeFailures {
			counter(c.handshakeFailures, f.Value, f.Label)
		}
		for _, p := range m.Published {
			counter(c.published, p.Value, p.Label)
		}
		for _, d := range m.Drops {
			counter(c.drops, d.Value, d.Label)
		}
		counter(c.recoveries, m.Recoveries)
		counter(c.replayed, m.Replayed)
		counter(c.writesHeld, m.WritesHeld)
		ch <- histogram(c.latency, m.Latency, 1e-9)
		ch <- histogram(c.writeBatch, m.WriteBatch, 1)
	}
	if p := src.Pull; p != nil {
		counter(c.published, p.Published(), "rest")
	}
	if h := src.Hub; h != nil {
		gauge(c.channels, float64(h.Channels()))
		counter(c.deliveries, h.Delivered())
	}
	if src.History != nil {
		h := src.History()
		gauge(c.historyMessages, float64(h.Messages))
		gauge(c.historyBytes, float64(h.Bytes))
	}
	if r := src.REST; r != nil {
		calls, lat := r.Calls()
		for _, cc := range calls {
			counter(c.restCalls, cc.Calls, cc.Method, cc.Outcome)
		}
		for _, l := range lat {
			ch <- histogram(c.restLatency, l.Latency, 1e-9, l.Method)
		}
	}
	if a := src.Auth; a != nil {
		for _, g := range a.Grants() {
			counter(c.grants, g.Count, g.GrantType, g.Outcome)
		}
	}
	if q := src.Push; q != nil {
		s := q.Stats()
		counter(c.pushAttempts, s.Attempts)
		counter(c.pushFailures, s.Failures)
		counter(c.pushDropped, s.Dropped)
		ctx, cancel := context.WithTimeout(context.Background(), pushQueueTimeout)
		n, err := q.Len(ctx)
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.pushDepth, err)
		} else {
			gauge(c.pushDepth, float64(n))
		}
	}
	if src.Cluster != nil {
		cl := src.Cluster()
		ch <- histogram(c.redisRoundTrip, cl.RoundTrip, 1e-9)
		counter(c.redisReconnects, cl.Reconnects)
		healthy := 0.0
		if cl.Healthy {
			healthy = 1
		}
		gauge(c.redisHealthy, healthy)
		counter(c.clusterRecvd, cl.Received)
	}
}

// histogram converts a stats snapshot, whose values are in a unit scale
// times the exported one (1e-9 for nanoseconds to seconds).
func histogram(d *prometheus.Desc, s stats.Snapshot, scale float64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(s.Bounds))
	for i, b := range s.Bounds {
		buckets[float64(b)*scale] = s.Cumulative[i]
	}
	return prometheus.MustNewConstHistogram(d, s.Count, float64(s.Sum)*scale, buckets, labels...)
}
