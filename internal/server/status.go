package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	redisbroker "github.com/pushpull/pushpull/internal/broker/redis"
	"github.com/pushpull/pushpull/internal/buildinfo"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/realtime"
	"github.com/pushpull/pushpull/internal/redisconn"
)

// StatusPath is the route of the trusted listener that `pushpull status`
// reads: one JSON Status.
const StatusPath = "/status"

// Status is what a running server says about itself to its operator.
type Status struct {
	Build   buildinfo.Info `json:"build"`
	Started time.Time      `json:"started"`
	// Uptime is in whole seconds.
	Uptime int64 `json:"uptime"`
	// Ready is what /readyz answers; NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// WebSockets and LongPolls are the connections open now; Channels the
	// channels they listen on.
	WebSockets int64 `json:"websockets"`
	LongPolls  int64 `json:"long_polls"`
	Channels   int   `json:"channels"`
	// Today counts requests since midnight UTC by route; two readings make
	// rates (`pushpull status` takes two).
	Today      realtime.DailyStat `json:"today"`
	Goroutines int                `json:"goroutines"`
	// HeapBytes is the Go heap in use; SysBytes what the runtime holds
	// from the system.
	HeapBytes uint64         `json:"heap_bytes"`
	SysBytes  uint64         `json:"sys_bytes"`
	Cluster   *ClusterStatus `json:"cluster,omitempty"`
	TLS       []CertStatus   `json:"tls,omitempty"`
}

// ClusterStatus is a cluster node's view of its cluster.
type ClusterStatus struct {
	Redis  string `json:"redis"` // the URL without its password
	Prefix string `json:"prefix"`
	// Node is this node's id; Nodes every node by its last heartbeat.
	Node  string             `json:"node"`
	Nodes []redisbroker.Node `json:"nodes"`
	// Error says why Nodes is missing (Redis unreachable).
	Error string `json:"error,omitempty"`
}

// CertStatus is a listener's current certificate.
type CertStatus struct {
	Listener string    `json:"listener"` // "public" or "internal"
	File     string    `json:"file"`
	Subject  string    `json:"subject"`
	Names    []string  `json:"names,omitempty"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

// nodeLister is the cluster broker's view of its peers.
type nodeLister interface {
	NodeID() string
	Nodes(ctx context.Context) ([]redisbroker.Node, error)
}

// statusTimeout bounds the Redis read of one status answer.
const statusTimeout = 5 * time.Second

// Status collects the server's state.
func (s *Server) Status(ctx context.Context) Status {
	st := s.realtime.Stat()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	out := Status{
		Build:      buildinfo.Read(),
		Uptime:     st.Uptime,
		Started:    time.Now().Add(-time.Duration(st.Uptime) * time.Second).UTC().Truncate(time.Second),
		WebSockets: st.WebSockets,
		LongPolls:  st.Pollings,
		Channels:   st.Channels,
		Today:      st.Daily,
		Goroutines: st.Goroutines,
		HeapBytes:  mem.HeapAlloc,
		SysBytes:   mem.Sys,
	}
	out.Ready, out.NotReady = s.readiness()
	if nl, ok := s.broker.(nodeLister); ok {
		cs := &ClusterStatus{Redis: redisconn.Redact(s.cfg.Redis), Prefix: s.cfg.RedisPrefix, Node: nl.NodeID()}
		ctx, cancel := context.WithTimeout(ctx, statusTimeout)
		defer cancel()
		nodes, err := nl.Nodes(ctx)
		if err != nil {
			cs.Error = err.Error()
		}
		cs.Nodes = nodes
		out.Cluster = cs
	}
	for _, c := range []struct {
		name string
		cert *certificate
	}{{"public", s.tlsCert}, {"internal", s.internalTLSCert}} {
		if c.cert == nil {
			continue
		}
		leaf := c.cert.cur.Load().Leaf
		out.TLS = append(out.TLS, CertStatus{Listener: c.name, File: c.cert.certFile, Subject: leaf.Subject.String(),
			Names: leaf.DNSNames, Serial: leaf.SerialNumber.String(), NotAfter: leaf.NotAfter.UTC()})
	}
	return out
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(s.Status(r.Context()))
	if err != nil {
		s.log.ErrorContext(r.Context(), "status: encode", "err", err)
		http.Error(w, "cannot encode the status", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(body, '\n'))
}

// internalURLFile records where the running server's trusted routes answer,
// for `pushpull status`.
const internalURLFile = "internal-url"

// recordInternalURL writes the trusted listener's base URL (its bound
// address, loopback for a wildcard one) into the data dir.
func recordInternalURL(dataDir string, ln net.Listener, tls bool) error {
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("record internal url: %s is not TCP", ln.Addr())
	}
	host := addr.IP.String()
	switch {
	case addr.IP.IsUnspecified() && addr.IP.To4() != nil:
		host = "127.0.0.1"
	case addr.IP.IsUnspecified():
		host = "::1"
	}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	u := scheme + net.JoinHostPort(host, fmt.Sprint(addr.Port))
	path := filepath.Join(dataDir, internalURLFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(u+"\n"), 0o600); err != nil {
		return fmt.Errorf("record internal url: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record internal url: %w", err)
	}
	return nil
}

// InternalURL is the base URL of the trusted routes of the server that runs
// (or last ran) on cfg.DataDir, as it recorded it; without a record, the
// one cfg describes.
func InternalURL(cfg config.Config) (string, error) {
	data, err := os.ReadFile(filepath.Join(cfg.DataDir, internalURLFile))
	if err == nil {
		return strings.TrimSpace(string(data)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read the recorded internal url: %w", err)
	}
	addr, tls := cfg.InternalAddr, cfg.InternalTLS()
	if cfg.TrustedOnAddr() {
		addr, tls = cfg.Addr, cfg.TLS()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("internal address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if tls {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port), nil
}

// InternalCertFile is the certificate the trusted routes are served with,
// "" for plain HTTP: `pushpull status` trusts exactly that certificate.
func InternalCertFile(cfg config.Config) string {
	if cfg.TrustedOnAddr() {
		return cfg.TLSCert
	}
	return cfg.InternalTLSCert
}
