package server

import (
	"path/filepath"

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

// PublicHost is the host name of PublicURL, the default portal's domain.
func PublicHost(cfg config.Config) string { return publicHost(cfg) }
