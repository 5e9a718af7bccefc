package server

import (
	"context"
	"time"

	"github.com/pushpull/pushpull/internal/console"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/store"
)

// consolePushQueueTimeout bounds the registry query behind the overview's
// push queue figure, so that a slow registry cannot hold the page.
const consolePushQueueTimeout = 2 * time.Second

// newConsole builds the operator console over the server's parts. It is
// mounted with the trusted routes (the internal listener).
func (s *Server) newConsole(h *hub.Hub, meter *console.Meter, uses *console.TokenUses, portal store.Portal, a api) *console.Console {
	opt := console.Options{
		Token:      s.cfg.ConsoleToken,
		Hosts:      s.cfg.ConsoleHosts,
		Broker:     s.broker,
		Hub:        h,
		Store:      s.store,
		Tenant:     portal.MemberID,
		PortalID:   portal.ID,
		MessageTTL: s.cfg.MessageTTL,
		Meter:      meter,
		Uses:       uses,
		Log:        s.log.With("component", "console"),
		Stat: func() console.NodeStat {
			st := s.realtime.Stat()
			return console.NodeStat{
				WebSockets: st.WebSockets, Pollings: st.Pollings, Channels: st.Channels,
				Goroutines: st.Goroutines, Uptime: time.Duration(st.Uptime) * time.Second,
				ClusterMode: st.ClusterMode, Publishes: st.Daily.Publishes, ClientPublishes: st.Daily.ClientPublishes,
			}
		},
		Deliveries: h.Delivered,
		Extra:      func(ctx context.Context) console.Extra { return s.consoleExtra(ctx, h, a) },
	}
	if s.shared != nil {
		opt.Tenants = s.shared.dir
	}
	if hc, ok := s.broker.(healthChecker); ok {
		opt.Healthy = hc.Healthy
	}
	if nc, ok := s.broker.(interface {
		LiveNodes(ctx context.Context) (int, error)
	}); ok {
		opt.LiveNodes = nc.LiveNodes
	}
	return console.New(opt)
}

// consoleExtra reads, for the console's overview, the counters the
// metrics collector (internal/metrics) reads at a scrape, from the same
// parts: the page and /metrics always agree, and nothing is counted twice.
func (s *Server) consoleExtra(ctx context.Context, h *hub.Hub, a api) console.Extra {
	m := s.realtime.Metrics()
	byProto := make(map[string]int64)
	for _, c := range m.Connections {
		if c.Value > 0 {
			byProto[c.Transport+"/"+c.Protocol] = int64(c.Value)
		}
	}
	var slow uint64
	for _, d := range m.Drops {
		if d.Label == "slow_consumer" {
			slow = d.Value
		}
	}
	var calls, errs uint64
	counts, _ := a.rest.Calls()
	for _, c := range counts {
		calls += c.Calls
		if c.Outcome != "ok" {
			errs += c.Calls
		}
	}
	deliveries, recoveries := h.Delivered(), m.Recoveries
	x := console.Extra{
		ConnectionsByProtocol: byProto,
		Deliveries:            &deliveries,
		SlowConsumersCut:      &slow,
		Recoveries:            &recoveries,
		RESTCalls:             &calls,
		RESTErrors:            &errs,
	}
	ctx, cancel := context.WithTimeout(ctx, consolePushQueueTimeout)
	defer cancel()
	if n, err := a.push.Len(ctx); err != nil {
		x.PushQueueError = err.Error()
	} else {
		x.PushQueue = &n
	}
	return x
}
