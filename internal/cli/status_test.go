package cli

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/realtime"
	"github.com/pushpull/pushpull/internal/redistest"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/tlstest"
)

// serveForStatus runs a server with cfg (its data dir and signature key
// filled in when empty) on loopback listeners bound first, and returns the
// public base URL and the config.
func serveForStatus(t *testing.T, cfg config.Config) (string, config.Config) {
	t.Helper()
	if cfg.DataDir == "" || cfg.DataDir == config.Default().DataDir {
		cfg.DataDir = t.TempDir()
	}
	if cfg.SignatureKey == "" {
		cfg.SignatureKey = "SECRET"
	}
	cfg.InternalAddr = "127.0.0.1:0"
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, ln, iln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	// ServeListeners records its internal URL before it serves: once the
	// internal listener answers, the record is there.
	internal := "http://" + iln.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}
	if cfg.InternalTLS() {
		internal = "https://" + iln.Addr().String()
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // only waiting for an answer
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(internal + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("internal listener not answering: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "http://" + ln.Addr().String(), cfg
}

// statusOf runs `pushpull status --json` with the environment env and
// decodes its report; it fails the test unless the command succeeds.
func statusOf(t *testing.T, env map[string]string, args ...string) statusReport {
	t.Helper()
	e := &opEnv{t: t, env: env}
	var rep statusReport
	e.ok(&rep, append([]string{"status", "--json"}, args...)...)
	return rep
}

// TestStatusOfARunningServer asks a real server that holds a WebSocket and
// has taken publishes, found through its data dir as an operator would.
func TestStatusOfARunningServer(t *testing.T) {
	base, cfg := serveForStatus(t, config.Default())
	id, _ := channel.ParseID("fb9f7e13dc3d595c5aefe1a0216c27a2")
	signed := channel.NewSigner([]byte(cfg.SignatureKey), channel.SHA1).SignChannel(id)
	conn, _, _, err := ws.Dial(t.Context(), strings.Replace(base, "http", "ws", 1)+"/sub/?CHANNEL_ID="+url.QueryEscape(signed))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	recorded, err := os.ReadFile(filepath.Join(cfg.DataDir, "internal-url"))
	if err != nil {
		t.Fatal(err)
	}
	internal := strings.TrimSpace(string(recorded))
	for range 2 {
		resp, err := http.Post(internal+"/pub/?CHANNEL_ID="+id.String(), "application/json", strings.NewReader(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	env := map[string]string{"PUSHPULL_DATA_DIR": cfg.DataDir}
	rep := statusOf(t, env, "--interval", "0")
	if rep.URL != internal || !rep.Ready || rep.WebSockets != 1 || rep.Channels != 1 || rep.Today.Publishes != 2 ||
		rep.Build.Version == "" || rep.Build.Go == "" || rep.Rates != nil || rep.Cluster != nil || rep.HeapBytes == 0 {
		t.Fatalf("status = %+v", rep)
	}

	// For people: one topic a line, with the rates over the interval.
	e := &opEnv{t: t, env: env}
	out := e.ok(nil, "status", "--interval", "10ms")
	for _, want := range []string{"server", internal, "ready", "1 websockets, 0 long polls", "on 1 channels",
		"rates", "publishes/s", "2 publishes", "memory", "goroutines", "build", "pushpull "} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
}

// TestStatusRates: requests per second between two readings, and across
// midnight UTC, where the counters start over.
func TestStatusRates(t *testing.T) {
	a := server.Status{Today: realtime.DailyStat{Date: "2026-12-05", WebSockets: 10, Pollings: 4, Publishes: 100, ClientPublishes: 1}}
	b := server.Status{Today: realtime.DailyStat{Date: "2026-12-05", WebSockets: 14, Pollings: 4, Publishes: 300, ClientPublishes: 3}}
	got := rates(a, b, 2*time.Second)
	if got.WebSockets != 2 || got.LongPolls != 0 || got.Publishes != 100 || got.ClientPublishes != 1 || got.Seconds != 2 {
		t.Errorf("rates = %+v", got)
	}
	b.Today.Date, b.Today.Publishes = "2026-12-06", 8
	if got := rates(a, b, 2*time.Second); got.Publishes != 4 || got.WebSockets != 7 {
		t.Errorf("across midnight: %+v", got)
	}
	if got := rates(a, b, 0); got != nil {
		t.Errorf("over no time: %+v", got)
	}
}

// TestStatusOverTLS: a trusted listener serving TLS is read with exactly
// the certificate the configuration names, and refused with another.
func TestStatusOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	leaf := ca.Issue(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 90*24*time.Hour)
	cfg := config.Default()
	cfg.InternalTLSCert, cfg.InternalTLSKey = leaf.CertFile, leaf.KeyFile
	_, cfg = serveForStatus(t, cfg)
	env := map[string]string{"PUSHPULL_DATA_DIR": cfg.DataDir, "PUSHPULL_INTERNAL_TLS_CERT": leaf.CertFile, "PUSHPULL_INTERNAL_TLS_KEY": leaf.KeyFile}
	rep := statusOf(t, env, "--interval", "0")
	if !strings.HasPrefix(rep.URL, "https://") || len(rep.TLS) != 1 || rep.TLS[0].Listener != "internal" || rep.TLS[0].Serial != leaf.Serial.String() {
		t.Fatalf("status over TLS = %+v", rep)
	}

	other := ca.Issue(t, filepath.Join(dir, "other.pem"), filepath.Join(dir, "other-key.pem"), 90*24*time.Hour)
	env["PUSHPULL_INTERNAL_TLS_CERT"] = other.CertFile
	code, _, stderr := (&opEnv{t: t, env: env}).run("status", "--interval", "0")
	if code != exitFailure || !strings.Contains(stderr, "is not "+other.CertFile) {
		t.Fatalf("with another certificate: exit %d, %q", code, stderr)
	}
}

// TestStatusListsClusterNodes: a cluster node's status names its Redis
// (without the password) and every node, itself marked.
func TestStatusListsClusterNodes(t *testing.T) {
	redis := redistest.Start(t)
	cfg := config.Default()
	cfg.Redis, cfg.RedisPrefix = redis.URL(), "statustest"
	_, a := serveForStatus(t, cfg)
	_, _ = serveForStatus(t, cfg)
	rep := statusOf(t, map[string]string{"PUSHPULL_DATA_DIR": a.DataDir}, "--interval", "0")
	c := rep.Cluster
	if c == nil || c.Prefix != "statustest" || c.Error != "" || len(c.Nodes) != 2 {
		t.Fatalf("cluster status = %+v", c)
	}
	selves := 0
	for _, n := range c.Nodes {
		if !n.Alive {
			t.Errorf("node %+v is not alive", n)
		}
		if n.Self {
			selves++
			if n.ID != c.Node {
				t.Errorf("self %s, but node %s", n.ID, c.Node)
			}
		}
	}
	if selves != 1 {
		t.Errorf("%d nodes marked as this one: %+v", selves, c.Nodes)
	}
}

// TestStatusWithoutAServer says where it looked and what to check.
func TestStatusWithoutAServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	e := &opEnv{t: t, env: map[string]string{"PUSHPULL_DATA_DIR": t.TempDir(), "PUSHPULL_INTERNAL_ADDR": addr}}
	code, stdout, stderr := e.run("status")
	if code != exitFailure || stdout != "" || !strings.Contains(stderr, addr+server.StatusPath) || !strings.Contains(stderr, "is the server running?") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestHealthcheckFindsTheTrustedListener: without --url, healthcheck asks
// the trusted listener the server recorded, which answers whatever --addr
// is and whether it serves TLS; a trusted listener on TLS is asked with the
// configuration's certificate.
func TestHealthcheckFindsTheTrustedListener(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	leaf := ca.Issue(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 90*24*time.Hour)
	for _, internalTLS := range []bool{false, true} {
		cfg := config.Default()
		cfg.TLSCert, cfg.TLSKey = leaf.CertFile, leaf.KeyFile
		env := map[string]string{}
		if internalTLS {
			cfg.InternalTLSCert, cfg.InternalTLSKey = leaf.CertFile, leaf.KeyFile
			env["PUSHPULL_INTERNAL_TLS_CERT"], env["PUSHPULL_INTERNAL_TLS_KEY"] = leaf.CertFile, leaf.KeyFile
		}
		_, cfg = serveForStatus(t, cfg)
		env["PUSHPULL_DATA_DIR"] = cfg.DataDir
		r, stdout, stderr := testRunner(t, env)
		if code := r.main(t.Context(), []string{"healthcheck"}); code != exitOK || stdout.String() != "" || stderr.String() != "" {
			t.Errorf("internal TLS %v: exit %d, stdout %q, stderr %q", internalTLS, code, stdout, stderr)
		}
	}
	// Nothing recorded and nothing listening where the configuration says.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, _, stderr := testRunner(t, map[string]string{"PUSHPULL_DATA_DIR": t.TempDir(), "PUSHPULL_INTERNAL_ADDR": addr})
	if code := r.main(t.Context(), []string{"healthcheck"}); code != exitFailure || !strings.Contains(stderr.String(), addr+"/readyz") {
		t.Errorf("without a server: exit %d, stderr %q", code, stderr)
	}
}
