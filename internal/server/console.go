package server

import (
	"context"
	"time"

	"github.com/pushpull/pushpull/internal/console"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/store"
)

// newConsole builds the operator console over the server's parts. It is
// mounted with the trusted routes (the internal listener).
func (s *Server) newConsole(h *hub.Hub, meter *console.Meter, uses *console.TokenUses, portal store.Portal) *console.Console {
	opt := console.Options{
		Token:      s.cfg.ConsoleToken,
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
