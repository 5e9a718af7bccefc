// Package console is the operator's web console: a page served on the
// internal listener at /console/ (assets embedded, no network needed) and the
// JSON API behind it under /console/api/. It reads what the server already
// keeps (the realtime counters, the hub, the broker's history and presence,
// the registry) and acts only through the same seams as any backend: a test
// message goes through Broker.Publish, a revoke through the registry.
//
// Reading needs no credential, like /server-stat/ on the same listener.
// Every mutating route needs the operator token (--console-token); without
// one configured the console is read-only and those routes answer 403.
package console

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/store"
)

// Prefix is where the console is mounted.
const Prefix = "/console/"

// Options configure a Console. Broker, Hub, Store and Stat are required.
type Options struct {
	// Token is the operator credential for mutating routes; empty makes the
	// console read-only.
	Token string
	// Hosts are the host names the console answers to besides IP
	// addresses and localhost (see hostAllowed).
	Hosts  []string
	Broker broker.Broker
	Hub    *hub.Hub
	Store  store.Store
	// Tenant is the default portal's member id: version 5 user channels
	// are derived from it.
	Tenant string
	// PortalID is the default portal, whose registry the console lists.
	PortalID int64
	// MessageTTL is the longest expiry a test message may ask for.
	MessageTTL time.Duration
	// Stat reads this node's realtime counters (realtime.Server.Stat).
	Stat func() NodeStat
	// Healthy reports the cluster's Redis health and LiveNodes counts the
	// cluster's nodes; both nil in embedded mode.
	Healthy   func() error
	LiveNodes func(ctx context.Context) (int, error)
	// Extra reads the figures the metrics counters keep (see Extra), when
	// the overview is asked for; it may walk the connections and ask the
	// registry, so the sampler does not call it. Nil: none shown.
	Extra func(ctx context.Context) Extra
	// Deliveries reads the deliveries counter (Extra.Deliveries) for the
	// per-second chart: the sampler calls it every second, so it must be
	// a plain read. Nil: no chart.
	Deliveries func() uint64
	// Tenants removes shared mode's tenants (tenant.Directory); nil in
	// personal mode, where the registry page says so.
	Tenants TenantRemover
	// Meter counts the messages this node fans out; see NewMeter.
	Meter *Meter
	// Uses is where REST authentication records token use; nil: last use
	// is not shown.
	Uses *TokenUses
	Log  *slog.Logger
	// Now is the clock, for tests; nil is time.Now.
	Now func() time.Time
}

// NodeStat is what the realtime server counts today.
type NodeStat struct {
	WebSockets  int64
	Pollings    int64
	Channels    int
	Goroutines  int
	Uptime      time.Duration
	ClusterMode bool
	// Publishes and ClientPublishes are today's backend and client
	// publish requests (DailyStat).
	Publishes       int64
	ClientPublishes int64
}

// Console serves the page and its API. Create it with New, mount Handler
// under Prefix, and Run the sampler for the overview's time series.
type Console struct {
	opt     Options
	guard   *guard
	samples *ring
	mux     *http.ServeMux
	// stopped is closed when Run returns: live tails end with it, so that
	// a drain does not wait for viewers.
	stopped chan struct{}
	stop    sync.Once
}

// New returns a console over opt.
func New(opt Options) *Console {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Meter == nil {
		opt.Meter = &Meter{}
	}
	c := &Console{opt: opt, guard: newGuard(opt.Token, opt.Now), samples: newRing(seriesLength),
		stopped: make(chan struct{})}
	c.mux = c.routes()
	return c
}

// Handler serves everything under Prefix, to requests addressed to a
// host the console answers to.
func (c *Console) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, c.opt.Hosts) {
			errUnknownHost.write(w)
			return
		}
		c.mux.ServeHTTP(w, r)
	})
}

// Run samples the overview's counters every second until ctx ends.
func (c *Console) Run(ctx context.Context) {
	defer c.stop.Do(func() { close(c.stopped) })
	t := time.NewTicker(time.Second)
	defer t.Stop()
	c.sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sample()
		}
	}
}

func (c *Console) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix, c.assets())
	mux.HandleFunc("GET "+Prefix+"api/session", c.serveSession)
	mux.HandleFunc("POST "+Prefix+"api/login", c.serveLogin)
	mux.HandleFunc("POST "+Prefix+"api/logout", c.serveLogout)
	mux.HandleFunc("GET "+Prefix+"api/overview", c.serveOverview)
	mux.HandleFunc("GET "+Prefix+"api/channel", c.serveChannel)
	mux.HandleFunc("GET "+Prefix+"api/tail", c.serveTail)
	mux.HandleFunc("GET "+Prefix+"api/registry", c.serveRegistry)
	mux.Handle("POST "+Prefix+"api/send", c.guard.mutating(http.HandlerFunc(c.serveSend)))
	mux.Handle("POST "+Prefix+"api/tokens/revoke", c.guard.mutating(http.HandlerFunc(c.serveRevoke)))
	mux.Handle("POST "+Prefix+"api/tenants/remove", c.guard.mutating(http.HandlerFunc(c.serveRemoveTenant)))
	notFound := func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no such console route")
	}
	mux.HandleFunc("GET "+Prefix+"api/", notFound)
	mux.HandleFunc("POST "+Prefix+"api/", notFound)
	return mux
}
