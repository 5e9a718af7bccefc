package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/redisconn"
	"github.com/pushpull/pushpull/internal/store"
	redisstore "github.com/pushpull/pushpull/internal/store/redis"
	"github.com/pushpull/pushpull/internal/store/sqlite"
)

// RegistryPath is the SQLite registry file the server opens for cfg, so that
// operator commands work on the same one.
func RegistryPath(cfg config.Config) string {
	return filepath.Join(cfg.DataDir, registryFile)
}

// PublicURL is how clients reach the server configured by cfg, without a
// trailing slash.
func PublicURL(cfg config.Config) string { return publicURL(cfg) }

// publicURLFile records in the data dir the public URL the server last
// started with, so that the operator commands print the URLs clients use
// (webhooks) without being given --public-url again.
const publicURLFile = "public-url"

// recordPublicURL writes publicURL(cfg) to the data dir, through a rename so
// that a reader never sees half of it.
func recordPublicURL(cfg config.Config) error {
	path := filepath.Join(cfg.DataDir, publicURLFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(publicURL(cfg)+"\n"), 0o600); err != nil {
		return fmt.Errorf("record public url: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record public url: %w", err)
	}
	return nil
}

// RecordedPublicURL is the public URL the server last started with on
// cfg.DataDir, or "" when it never did. The operator commands fall back
// to it when no --public-url is given.
func RecordedPublicURL(cfg config.Config) string {
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, publicURLFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// PublicHost is the host name of PublicURL, the default portal's domain.
func PublicHost(cfg config.Config) string { return publicHost(cfg) }

// OpenRegistry opens the registry the server configured by cfg uses: the
// shared Redis one with --redis, else the SQLite file in the data dir. The
// operator commands use it to act on the same records as the server.
// close releases the store and its connection.
func OpenRegistry(ctx context.Context, cfg config.Config) (st store.Store, close func() error, err error) {
	if cfg.Redis == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
		}
		sq, err := sqlite.Open(ctx, RegistryPath(cfg), PublicHost(cfg))
		if err != nil {
			return nil, nil, err
		}
		return sq, sq.Close, nil
	}
	client, err := redisconn.Open(ctx, cfg.Redis)
	if err != nil {
		return nil, nil, err
	}
	rs, err := redisstore.Open(ctx, client, cfg.RedisPrefix, PublicHost(cfg))
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return rs, func() error { err := rs.Close(); client.Close(); return err }, nil
}
