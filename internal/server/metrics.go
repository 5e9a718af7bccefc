package server

import (
	"log/slog"

	"github.com/pushpull/pushpull/internal/broker/memory"
	redisbroker "github.com/pushpull/pushpull/internal/broker/redis"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/metrics"
)

// newMetrics builds the registry /metrics serves, over the parts of s and
// the hub h; the broker's engine decides which of history and cluster
// counters exist.
func newMetrics(s *Server, h *hub.Hub, a api, log *slog.Logger) *metrics.Metrics {
	src := metrics.Sources{
		Realtime: s.realtime,
		Hub:      h,
		REST:     a.rest,
		Auth:     a.auth,
		Pull:     a.pull,
		Push:     a.push,
		Log:      log,
	}
	switch b := s.broker.(type) {
	case *memory.Broker:
		src.History = func() metrics.History {
			st := b.Stats()
			return metrics.History{Messages: int64(st.Messages), Bytes: st.Bytes}
		}
	case *redisbroker.Broker:
		src.Cluster = func() metrics.Cluster {
			st := b.Stats()
			return metrics.Cluster{RoundTrip: st.RoundTrip, Received: st.Received, Reconnects: st.Reconnects, Healthy: st.Healthy}
		}
	}
	return metrics.New(src)
}
