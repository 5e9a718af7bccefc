package console

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/message"
)

// Meter counts the messages this node's broker hands to the hub: every
// message in embedded mode, in a cluster those for channels with a
// subscriber on this node. It wraps the hub as the broker's Deliverer and
// costs one atomic add per message.
type Meter struct {
	next      broker.Deliverer
	delivered atomic.Uint64
}

// NewMeter returns a Deliverer that counts and passes every message to next.
func NewMeter(next broker.Deliverer) *Meter { return &Meter{next: next} }

// Deliver implements broker.Deliverer.
func (m *Meter) Deliver(msg *message.Message) {
	m.delivered.Add(1)
	m.next.Deliver(msg)
}

// Messages returns the messages counted since start.
func (m *Meter) Messages() uint64 { return m.delivered.Load() }

// Extra holds the figures that other parts of the server count for the
// metrics exporter (internal/metrics), read from the same counters at the
// moment the page asks: the console counts none of them a second time.
// Nil fields have no source (a console built without one, in tests);
// counters are totals since start.
type Extra struct {
	// ConnectionsByProtocol: "transport/protocol" (the labels of
	// pushpull_connections, such as "websocket/jsonrpc") → open
	// connections; combinations with none are left out.
	ConnectionsByProtocol map[string]int64 `json:"connectionsByProtocol"`
	// Deliveries are messages handed to subscriber connections, one per
	// message and connection (pushpull_deliveries_total).
	Deliveries *uint64 `json:"deliveries"`
	// SlowConsumersCut are connections cut for a full send queue.
	SlowConsumersCut *uint64 `json:"slowConsumersCut"`
	// Recoveries are connections that asked to recover from a mid.
	Recoveries *uint64 `json:"recoveries"`
	// RESTCalls are REST calls answered; RESTErrors those answered with
	// an error code.
	RESTCalls  *uint64 `json:"restCalls"`
	RESTErrors *uint64 `json:"restErrors"`
	// PushQueue is the number of mobile pushes waiting in the registry;
	// PushQueueError says why it could not be read.
	PushQueue      *int64 `json:"pushQueue"`
	PushQueueError string `json:"pushQueueError,omitempty"`
}

// seriesLength is 15 minutes of one-second samples.
const seriesLength = 15 * 60

// sample is one second's reading of the cumulative counters and gauges.
type sample struct {
	at         time.Time
	messages   uint64
	deliveries uint64
	hasDeliv   bool
	websockets int64
	pollings   int64
	channels   int
}

// ring keeps the last n samples.
type ring struct {
	mu   sync.Mutex
	buf  []sample
	next int
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]sample, n)} }

func (r *ring) add(s sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// all returns the samples oldest first.
func (r *ring) all() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]sample(nil), r.buf[:r.next]...)
	}
	out := make([]sample, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}

func (c *Console) extra(ctx context.Context) Extra {
	if c.opt.Extra == nil {
		return Extra{}
	}
	return c.opt.Extra(ctx)
}

func (c *Console) sample() {
	st := c.opt.Stat()
	s := sample{at: c.opt.Now(), messages: c.opt.Meter.Messages(),
		websockets: st.WebSockets, pollings: st.Pollings, channels: st.Channels}
	if c.opt.Deliveries != nil {
		s.deliveries, s.hasDeliv = c.opt.Deliveries(), true
	}
	c.samples.add(s)
}

// overview is the answer of GET /console/api/overview.
type overview struct {
	Now         int64        `json:"now"` // unix milliseconds
	Uptime      int64        `json:"uptime"`
	Goroutines  int          `json:"goroutines"`
	Connections connections  `json:"connections"`
	Channels    int          `json:"channels"`
	Messages    uint64       `json:"messages"`
	Today       today        `json:"today"`
	Series      series       `json:"series"`
	Extra       Extra        `json:"extra"`
	Cluster     clusterState `json:"cluster"`
}

type connections struct {
	WebSocket   int64 `json:"websocket"`
	LongPolling int64 `json:"longPolling"`
}

type today struct {
	Publishes       int64 `json:"publishes"`
	ClientPublishes int64 `json:"clientPublishes"`
}

// series are per-second figures, oldest first, one per sample after the
// first; Start is the unix millisecond time of the first.
type series struct {
	Start       int64     `json:"start"`
	Step        int64     `json:"step"` // milliseconds
	Messages    []float64 `json:"messages"`
	Deliveries  []float64 `json:"deliveries"` // null until provided
	WebSockets  []int64   `json:"websockets"`
	LongPolling []int64   `json:"longPolling"`
}

type clusterState struct {
	Mode  string `json:"mode"` // "embedded" or "cluster"
	Redis string `json:"redis,omitempty"`
	// Nodes are the cluster's live nodes; 0 in embedded mode or when
	// Redis cannot say.
	Nodes int `json:"nodes,omitempty"`
}

func (c *Console) serveOverview(w http.ResponseWriter, r *http.Request) {
	st := c.opt.Stat()
	o := overview{
		Now: c.opt.Now().UnixMilli(), Uptime: int64(st.Uptime / time.Second), Goroutines: st.Goroutines,
		Connections: connections{WebSocket: st.WebSockets, LongPolling: st.Pollings},
		Channels:    st.Channels, Messages: c.opt.Meter.Messages(),
		Today:   today{Publishes: st.Publishes, ClientPublishes: st.ClientPublishes},
		Series:  buildSeries(c.samples.all()),
		Extra:   c.extra(r.Context()),
		Cluster: clusterState{Mode: "embedded"},
	}
	if st.ClusterMode {
		o.Cluster.Mode = "cluster"
	}
	if c.opt.Healthy != nil {
		o.Cluster.Redis = "ok"
		if err := c.opt.Healthy(); err != nil {
			o.Cluster.Redis = err.Error()
		}
	}
	if c.opt.LiveNodes != nil {
		if n, err := c.opt.LiveNodes(r.Context()); err == nil {
			o.Cluster.Nodes = n
		}
	}
	writeJSON(w, http.StatusOK, o)
}

func buildSeries(ss []sample) series {
	out := series{Step: 1000, Messages: []float64{}, WebSockets: []int64{}, LongPolling: []int64{}}
	if len(ss) < 2 {
		return out
	}
	out.Start = ss[1].at.UnixMilli()
	deliv := ss[0].hasDeliv
	for i := 1; i < len(ss); i++ {
		a, b := ss[i-1], ss[i]
		secs := b.at.Sub(a.at).Seconds()
		if secs <= 0 {
			secs = 1
		}
		out.Messages = append(out.Messages, float64(b.messages-a.messages)/secs)
		if deliv && a.hasDeliv && b.hasDeliv {
			out.Deliveries = append(out.Deliveries, float64(b.deliveries-a.deliveries)/secs)
		}
		out.WebSockets = append(out.WebSockets, b.websockets)
		out.LongPolling = append(out.LongPolling, b.pollings)
	}
	return out
}
