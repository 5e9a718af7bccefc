// Package server assembles pushpull from its parts: the registry of settings,
// the broker, the hub, the push-server routes, and the HTTP listener with its
// graceful drain.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/console"
	"github.com/pushpull/pushpull/internal/fdlimit"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/metrics"
	"github.com/pushpull/pushpull/internal/push"
	"github.com/pushpull/pushpull/internal/realtime"
	"github.com/pushpull/pushpull/internal/store"
)

// liveRetention bridges the gap between two long polls for messages that
// clients publish to each other with expiry 0 (live only): without it a
// long-polling receiver misses every such message that arrives while it is
// between requests.
const liveRetention = 30 * time.Second

// isLoopback reports whether a listener is reachable from this host only.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// registryFile is the SQLite registry in the data dir.
const registryFile = "registry.db"

// publicURL is where clients reach this server: --public-url, or else the
// listen address on this host, https when the listener serves TLS.
func publicURL(cfg config.Config) string {
	if cfg.PublicURL != "" {
		return strings.TrimRight(cfg.PublicURL, "/")
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	scheme := "http://"
	if cfg.TLS() {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port)
}

func publicHost(cfg config.Config) string {
	u, err := url.Parse(publicURL(cfg))
	if err != nil || u.Hostname() == "" {
		return "localhost"
	}
	return u.Hostname()
}

// signatureKeyFile holds the key generated on first start when none is set.
const signatureKeyFile = "signature.key"

// Server is one pushpull process.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	broker   broker.Broker
	realtime *realtime.Server
	store    store.Store
	// internal serves the trusted routes when --internal-addr is set.
	internal *http.Server
	push     *push.Queue
	http     *http.Server
	admit    *admission  // the large public requests handled at once
	ready    atomic.Bool // from serving until the drain starts
	cluster  *cluster    // nil in embedded mode
	shared   *sharedMode // nil in personal mode
	console  *console.Console
	// tlsCert and internalTLSCert are the listeners' certificates; nil
	// serves plain HTTP.
	tlsCert, internalTLSCert *certificate
	metrics                  *metrics.Metrics
}

// healthChecker is a broker that can lose its backend (Redis).
type healthChecker interface{ Healthy() error }

// Run serves on cfg.Addr (and the trusted routes on cfg.InternalAddr) until
// ctx is cancelled, then shuts down gracefully. It returns once shutdown is
// complete.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	raiseFileLimit(log)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s (--addr): %w", cfg.Addr, err)
	}
	iln, err := listenInternal(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	s, err := New(cfg, log)
	if err != nil {
		ln.Close()
		if iln != nil {
			iln.Close()
		}
		return err
	}
	// Run is the process's server, so it takes SIGHUP itself; New and
	// ServeListeners, which tests and embedders use, leave signals alone.
	defer s.reloadOnHangup()()
	return s.ServeListeners(ctx, ln, iln)
}

// listenInternal binds cfg.InternalAddr, or returns nil when the trusted
// routes share the public listener.
func listenInternal(cfg config.Config) (net.Listener, error) {
	if cfg.TrustedOnAddr() {
		return nil, nil
	}
	iln, err := net.Listen("tcp", cfg.InternalAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (--internal-addr): %w", cfg.InternalAddr, err)
	}
	return iln, nil
}

// New builds a server from cfg, restoring state from cfg.DataDir.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	log = withRequestIDs(log)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	if err := recordPublicURL(cfg); err != nil {
		// Only the operator commands' printed URLs depend on it.
		log.Warn("cannot record the public URL for the operator commands; make the data dir writable, or give them --public-url", "err", err)
	}
	var cl *cluster
	if cfg.Redis != "" {
		c, err := openCluster(cfg, log)
		if err != nil {
			return nil, err
		}
		cl = c
	}
	s, err := build(cfg, cl, log)
	if err != nil && cl != nil {
		cl.close()
	}
	return s, err
}

// build assembles the server from its parts: the signer, the broker and the
// realtime routes over it, the registry, and the REST and HTTP routes.
func build(cfg config.Config, cl *cluster, log *slog.Logger) (*Server, error) {
	// Certificates first: a wrong file is the operator's to fix, before
	// anything else starts.
	tlsLog := log.With("component", "tls")
	cert, err := loadCertificate("--tls-cert", cfg.TLSCert, cfg.TLSKey, tlsLog)
	if err != nil {
		return nil, err
	}
	internalCert, err := loadCertificate("--internal-tls-cert", cfg.InternalTLSCert, cfg.InternalTLSKey, tlsLog)
	if err != nil {
		return nil, err
	}
	if cfg.TLS() && strings.HasPrefix(cfg.PublicURL, "http://") {
		log.Warn("--public-url is http:// but --addr serves HTTPS: clients are told to use plain URLs that this listener does not answer; set --public-url to https://",
			"public_url", cfg.PublicURL)
	}
	signer, err := newSigner(cfg, cl, log)
	if err != nil {
		return nil, err
	}
	h := hub.New()
	meter := console.NewMeter(h)
	b, err := newBroker(cfg, cl, meter, log.With("component", "broker"))
	if err != nil {
		return nil, err
	}
	st, portal, err := startRegistry(cfg, cl, log)
	if err != nil {
		_ = b.Close(context.Background())
		return nil, err
	}
	sm, err := startShared(cfg, st, portal, signer, log.With("component", "tenants"))
	if err != nil {
		_ = st.Close()
		_ = b.Close(context.Background())
		return nil, fmt.Errorf("shared mode: %w", err)
	}
	rt := newRealtime(cfg, cl != nil, b, h, signer, sm, log.With("component", "realtime"))
	s := &Server{cfg: cfg, log: log, broker: b, realtime: rt, store: st, cluster: cl, shared: sm, tlsCert: cert, internalTLSCert: internalCert}
	uses := console.NewTokenUses()
	a := newAPI(cfg, st, portal, b, signer, uses, sm.homeClientID(), log)
	s.console = s.newConsole(h, meter, uses, portal, a)
	s.metrics = newMetrics(s, h, a, log.With("component", "metrics"))
	s.mountRoutes(a)
	return s, nil
}

// newSigner returns the channel signer: the key is --signature-key, or else
// the one kept in the data dir, or in Redis for a cluster.
func newSigner(cfg config.Config, cl *cluster, log *slog.Logger) (*channel.Signer, error) {
	key, err := signatureKey(cfg, log)
	if cl != nil {
		key, err = cl.signatureKey(cfg, log)
	}
	if err != nil {
		return nil, err
	}
	algo, err := channel.ParseAlgo(cfg.SignatureAlgo)
	if err != nil {
		return nil, fmt.Errorf("signature-algo: %w", err)
	}
	return channel.NewSigner(key, algo), nil
}

// serveHealth is liveness: the process answers HTTP. It stays 200 while
// draining and while Redis is down, since restarting the process would
// fix neither and would drop every connection it still serves.
func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

// serveReady is readiness: whether this node should be sent new clients.
// The registry is open for as long as s.ready is set (it is closed only
// after the drain); in a cluster it lives in Redis, so the broker's Redis
// check covers it too.
func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if ok, why := s.readiness(); !ok {
		// In a Redis outage connections stay up and are served what can be
		// served; a load balancer sends new clients to ready nodes meanwhile.
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(why + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// readiness is /readyz's verdict, and why not when it is no.
func (s *Server) readiness() (ready bool, why string) {
	if !s.ready.Load() {
		return false, "draining"
	}
	if hc, ok := s.broker.(healthChecker); ok {
		if err := hc.Healthy(); err != nil {
			return false, "redis unreachable: " + err.Error()
		}
	}
	return true, ""
}

// Serve accepts on ln, and binds cfg.InternalAddr for the trusted routes,
// until ctx is cancelled; see ServeListeners.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	iln, err := listenInternal(s.cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	return s.ServeListeners(ctx, ln, iln)
}

// ServeListeners accepts the public routes on ln and the trusted ones on iln
// (nil when cfg.InternalAddr is config.SameAddr) until ctx is cancelled, then
// drains: new connections are refused, every subscriber is told
// server_restart and closed, in-flight requests get up to
// cfg.ShutdownTimeout and are then cut, and the history is snapshotted
// whatever was slow before.
func (s *Server) ServeListeners(ctx context.Context, ln, iln net.Listener) error {
	if (iln == nil) != (s.internal == nil) {
		_ = ln.Close()
		if iln != nil {
			_ = iln.Close()
		}
		return errors.New("serve: an internal listener is wanted exactly when --internal-addr is not \"same\"")
	}
	// The push worker outlives ctx: it keeps delivering while requests
	// drain, and is stopped before the registry it reads is closed.
	pushCtx, stopPush := context.WithCancel(context.Background())
	pushDone := make(chan struct{})
	go func() {
		defer close(pushDone)
		s.push.Run(pushCtx)
	}()
	defer func() { stopPush(); <-pushDone }() // also on early returns

	if s.tlsCert != nil {
		ln = s.tlsCert.listen(ln)
	}
	if iln != nil && s.internalTLSCert != nil {
		iln = s.internalTLSCert.listen(iln)
	}
	trusted, trustedTLS := iln, s.internalTLSCert != nil
	if iln == nil {
		trusted, trustedTLS = ln, s.tlsCert != nil
	}
	if err := recordInternalURL(s.cfg.DataDir, trusted, trustedTLS); err != nil {
		// Only `pushpull status` without --url depends on it.
		s.log.Warn("cannot record the internal URL for pushpull status; give it --url", "err", err)
	}
	// The console's sampler ends with ctx, and its live tails with it, so
	// that the drain does not wait for viewers.
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		s.console.Run(ctx)
	}()
	defer func() { <-consoleDone }()

	// Ready before either listener serves, so that /readyz never answers
	// "draining" on a server that is starting.
	s.ready.Store(true)

	internalDone := make(chan error, 1)
	if iln != nil {
		go func() { internalDone <- s.internal.Serve(iln) }()
		s.log.Info("trusted routes listening", "addr", iln.Addr().String(), "tls", s.internalTLSCert != nil, "pub", strings.Join(s.cfg.PubPaths, ","),
			"api", strings.Join(s.cfg.APIPaths, ","), "stat", s.cfg.StatPath)
	} else if !isLoopback(ln.Addr()) {
		s.log.Warn("backend publish routes are served on the public listener (--internal-addr same): anyone who reaches it can publish to any channel",
			"addr", ln.Addr().String(), "pub", strings.Join(s.cfg.PubPaths, ","), "api", strings.Join(s.cfg.APIPaths, ","))
	}
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(ln) }()
	s.log.Info("pushpull listening", "addr", ln.Addr().String(), "tls", s.tlsCert != nil, "data_dir", s.cfg.DataDir,
		"sub", strings.Join(s.cfg.SubPaths, ","), "pubweb", strings.Join(s.cfg.PubWebPaths, ","))

	if s.cfg.DebugAddr != "" {
		stop, err := s.serveDebug(s.cfg.DebugAddr)
		if err != nil {
			return err
		}
		defer stop()
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		serveErr = fmt.Errorf("http server: %w", serveErr)
	}
	s.ready.Store(false)
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()

	// Stop accepting and wait for plain requests while the realtime side
	// drains the connections it holds (hijacked WebSockets and long polls,
	// which http.Server.Shutdown would otherwise wait 40 s for). Requests
	// still running at the deadline are cut: one stuck client must not
	// cost everyone the history snapshot below.
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.shutdownHTTP(sctx, internalDone) }()
	errs := []error{serveErr}
	if err := s.realtime.Shutdown(sctx); err != nil {
		errs = append(errs, err)
	}
	if err := <-httpDone; err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	// No request can enqueue a push any more; jobs not yet delivered stay
	// in the registry for the next start.
	stopPush()
	<-pushDone
	// The snapshot gets a deadline of its own: the drain's may be spent.
	cctx, cancelClose := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancelClose()
	if err := s.broker.Close(cctx); err != nil {
		errs = append(errs, fmt.Errorf("close broker: %w", err))
	}
	s.shared.close() // stops reading the registry before it closes
	if err := s.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close registry: %w", err))
	}
	if s.cluster != nil {
		s.cluster.close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("http server: %w", err))
	}
	err := errors.Join(errs...)
	if err != nil {
		s.log.Error("shutdown finished with errors", "err", err)
	} else {
		s.log.Info("shutdown complete")
	}
	return err
}

// shutdownHTTP stops both listeners and waits for their requests until ctx
// ends, then closes the connections of requests that are still running. A
// request cut that way is the client's doing (a trickled body, say), not
// a failed shutdown: it is logged, not returned.
func (s *Server) shutdownHTTP(ctx context.Context, internalDone <-chan error) error {
	servers := []*http.Server{s.http}
	if s.internal != nil {
		servers = append(servers, s.internal)
	}
	results := make(chan error, len(servers))
	for _, srv := range servers {
		go func() {
			err := srv.Shutdown(ctx)
			if err != nil && ctx.Err() != nil {
				s.log.Warn("requests still running at the shutdown deadline are cut", "timeout", s.cfg.ShutdownTimeout)
				err = srv.Close()
			}
			results <- err
		}()
	}
	var errs []error
	for range servers {
		errs = append(errs, <-results)
	}
	if s.internal != nil {
		if err := <-internalDone; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// serveDebug serves the profiler on its own listener, so that it is never
// exposed with the public routes.
func (s *Server) serveDebug(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s.log.Info("profiler listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// signatureKey returns the configured key or the one kept in the data dir,
// generating it on first start so a zero-setup server still signs channels.
func signatureKey(cfg config.Config, log *slog.Logger) ([]byte, error) {
	if cfg.SignatureKey != "" {
		return []byte(cfg.SignatureKey), nil
	}
	path := filepath.Join(cfg.DataDir, signatureKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		key := strings.TrimSpace(string(data))
		if key == "" {
			return nil, fmt.Errorf("signature key file %s is empty", path)
		}
		return []byte(key), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read signature key: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("generate signature key: %w", err)
	}
	key := hex.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("save signature key: %w", err)
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("save signature key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("save signature key: %w", err)
	}
	log.Info("generated a signature key; give it to the backend that signs channels", "file", path)
	return []byte(key), nil
}

// raiseFileLimit lifts the soft open-file limit to the hard one: every
// connection is a file descriptor, and the usual soft limit (1,024) would
// cap the server far below what it can hold.
func raiseFileLimit(log *slog.Logger) {
	l, err := fdlimit.Raise()
	switch {
	case errors.Is(err, fdlimit.ErrUnsupported):
	case err != nil:
		log.Warn("cannot raise the open-file limit: connections beyond it are refused; raise the hard limit (systemd LimitNOFILE=, ulimit -Hn)", "err", err, "limit", l.After)
	case l.Raised():
		log.Info("raised the open-file limit", "from", l.Before, "to", l.After)
	default:
		log.Info("open-file limit", "limit", l.After)
	}
}
