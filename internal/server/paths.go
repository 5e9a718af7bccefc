package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pushpull/pushpull/internal/config"
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
