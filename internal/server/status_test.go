package server

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/config"
)

// TestStatusOnlyOnTheTrustedListener: /status says what the server holds,
// on the trusted listener only (it names the cluster's Redis and nodes),
// and the server records where that listener answers.
func TestStatusOnlyOnTheTrustedListener(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	r := start(t, cfg)
	if code, _ := get(t, r.URL+StatusPath); code != http.StatusNotFound {
		t.Fatalf("%s on the public listener: %d, want 404", StatusPath, code)
	}
	code, body := get(t, r.Internal+StatusPath)
	var st Status
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
		t.Fatalf("%s: %d %q %v", StatusPath, code, body, err)
	}
	if !st.Ready || st.Build.Go == "" || st.Started.IsZero() || st.Cluster != nil || st.TLS != nil || st.Today.Date == "" {
		t.Fatalf("status = %+v", st)
	}
	recorded, err := os.ReadFile(filepath.Join(cfg.DataDir, internalURLFile))
	if err != nil || strings.TrimSpace(string(recorded)) != r.Internal {
		t.Fatalf("recorded internal url %q (%v), want %s", recorded, err, r.Internal)
	}
	if u, err := InternalURL(cfg); err != nil || u != r.Internal {
		t.Fatalf("InternalURL = %q, %v", u, err)
	}
}

// TestInternalURLFromConfig is where status looks when the server never
// recorded an address: the configuration's, loopback for a wildcard.
func TestInternalURLFromConfig(t *testing.T) {
	for _, tt := range []struct {
		modify func(*config.Config)
		want   string
	}{
		{func(c *config.Config) {}, "http://127.0.0.1:8895"},
		{func(c *config.Config) { c.InternalAddr = "0.0.0.0:9000" }, "http://127.0.0.1:9000"},
		{func(c *config.Config) { c.InternalAddr = "10.0.0.5:9000"; c.InternalTLSCert = "c.pem" }, "https://10.0.0.5:9000"},
		{func(c *config.Config) { c.InternalAddr = config.SameAddr; c.Addr = ":8443"; c.TLSCert = "c.pem" }, "https://127.0.0.1:8443"},
	} {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		tt.modify(&cfg)
		if got, err := InternalURL(cfg); err != nil || got != tt.want {
			t.Errorf("InternalURL(%s, %s) = %q, %v; want %s", cfg.InternalAddr, cfg.Addr, got, err, tt.want)
		}
	}
}
