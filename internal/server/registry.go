package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/redisconn"
	"github.com/pushpull/pushpull/internal/store"
	redisstore "github.com/pushpull/pushpull/internal/store/redis"
	"github.com/pushpull/pushpull/internal/store/sqlite"
)

// openRegistry is the one place that picks the registry's engine: the Redis
// registry on client (the shared Redis of --redis) when client is not nil,
// else the SQLite file in the data dir. The server and the operator commands
// both open it here, so that they act on the same records.
func openRegistry(ctx context.Context, cfg config.Config, client rueidis.Client) (store.Store, error) {
	if client != nil {
		return redisstore.Open(ctx, client, cfg.RedisPrefix, PublicHost(cfg))
	}
	return sqlite.Open(ctx, RegistryPath(cfg), PublicHost(cfg))
}

// OpenRegistry opens the registry the server configured by cfg uses: the
// shared Redis one with --redis, else the SQLite file in the data dir. The
// operator commands use it to act on the same records as the server.
// close releases the store and its connection.
func OpenRegistry(ctx context.Context, cfg config.Config) (st store.Store, close func() error, err error) {
	if cfg.Redis == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
		}
		sq, err := openRegistry(ctx, cfg, nil)
		if err != nil {
			return nil, nil, err
		}
		return sq, sq.Close, nil
	}
	client, err := redisconn.Open(ctx, cfg.Redis)
	if err != nil {
		return nil, nil, err
	}
	rs, err := openRegistry(ctx, cfg, client)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return rs, func() error { err := rs.Close(); client.Close(); return err }, nil
}

// startRegistry opens the server's registry, on the cluster's Redis client
// when cl is not nil, and makes sure the default portal exists.
func startRegistry(cfg config.Config, cl *cluster, log *slog.Logger) (store.Store, store.Portal, error) {
	ctx := context.Background()
	var client rueidis.Client
	if cl != nil {
		client = cl.client
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, redisStartTimeout)
		defer cancel()
	}
	st, err := openRegistry(ctx, cfg, client)
	if err != nil {
		return nil, store.Portal{}, fmt.Errorf("registry: %w", err)
	}
	// The default portal exists from the first start, so its member_id is
	// stable before any application is registered.
	portal, err := st.DefaultPortal(context.Background())
	if err != nil {
		_ = st.Close()
		return nil, store.Portal{}, fmt.Errorf("registry: default portal: %w", err)
	}
	log.Debug("registry open", "member_id", portal.MemberID, "domain", portal.Domain)
	return st, portal, nil
}
