package server

import (
	"log/slog"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/config"
)

// newBroker starts the broker that delivers to h (the hub, through the
// console's meter): the cluster's Redis one, or else the in-memory one that
// keeps its history in the data dir.
func newBroker(cfg config.Config, cl *cluster, h broker.Deliverer, log *slog.Logger) (broker.Broker, error) {
	if cl != nil {
		b, err := cl.newBroker(cfg, h, log)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	b, err := memory.New(memory.Options{
		DataDir:           cfg.DataDir,
		HistoryPerChannel: cfg.HistoryPerChannel,
		MaxStored:         cfg.HistoryMax,
		MaxBytes:          cfg.HistoryBytes(),
		ChannelMaxBytes:   cfg.HistoryChannelMaxBytes,
		MaxPayload:        cfg.MaxPayload,
		LiveRetention:     liveRetention,
		Log:               log,
	}, h)
	if err != nil {
		return nil, err
	}
	return b, nil
}
