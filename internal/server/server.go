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

	"github.com/pushpull/pushpull/internal/auth"
	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/fdlimit"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/pull"
	"github.com/pushpull/pushpull/internal/push"
	"github.com/pushpull/pushpull/internal/realtime"
	"github.com/pushpull/pushpull/internal/rest"
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
// listen address on this host.
func publicURL(cfg config.Config) string {
	if cfg.PublicURL != "" {
		return strings.TrimRight(cfg.PublicURL, "/")
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
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
	healthy  atomic.Bool
	cluster  *cluster // nil in embedded mode
}

// healthChecker is a broker that can lose its backend (Redis).
type healthChecker interface{ Healthy() error }

// Run serves on cfg.Addr until ctx is cancelled, then shuts down gracefully.
// It returns once shutdown is complete.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	raiseFileLimit(log)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s, err := New(cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	return s.Serve(ctx, ln)
}

// New builds a server from cfg, restoring state from cfg.DataDir.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
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

func build(cfg config.Config, cl *cluster, log *slog.Logger) (*Server, error) {
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
	h := hub.New()
	var b broker.Broker
	if cl != nil {
		b, err = cl.newBroker(cfg, h, log.With("component", "broker"))
	} else {
		b, err = memory.New(memory.Options{
			DataDir:           cfg.DataDir,
			HistoryPerChannel: cfg.HistoryPerChannel,
			MaxStored:         cfg.HistoryMax,
			MaxBytes:          cfg.HistoryBytes(),
			ChannelMaxBytes:   cfg.HistoryChannelMaxBytes,
			MaxPayload:        cfg.MaxPayload,
			LiveRetention:     liveRetention,
			Log:               log.With("component", "broker"),
		}, h)
	}
	if err != nil {
		return nil, err
	}
	signer := channel.NewSigner(key, algo)
	rt := realtime.New(realtime.Options{
		SubPaths:              cfg.SubPaths,
		PubPaths:              cfg.PubPaths,
		PubWebPaths:           cfg.PubWebPaths,
		APIPaths:              cfg.APIPaths,
		StatPath:              cfg.StatPath,
		MaxPayload:            cfg.MaxPayload,
		MaxChannelsPerRequest: cfg.MaxChannelsPerRequest,
		MessageTTL:            cfg.MessageTTL,
		Replay:                broker.HistoryLimit{PerChannel: cfg.ReplayPerChannel, Total: cfg.ReplayTotal},
		PollTimeout:           cfg.PollTimeout,
		PingInterval:          cfg.PingInterval,
		RPCPingInterval:       cfg.JSONRPCPingInterval,
		WriteTimeout:          cfg.WriteTimeout,
		SendQueue:             cfg.SendQueue,
		MaxConnPerChannel:     cfg.MaxConnPerChannel,
	}, b, h, signer, log.With("component", "realtime"))

	var st store.Store
	if cl != nil {
		st, err = cl.openStore(cfg)
	} else {
		st, err = store.OpenSQLite(context.Background(), filepath.Join(cfg.DataDir, registryFile), publicHost(cfg))
	}
	if err != nil {
		_ = b.Close(context.Background())
		return nil, fmt.Errorf("registry: %w", err)
	}
	// The default portal exists from the first start, so its member_id is
	// stable before any application is registered.
	portal, err := st.DefaultPortal(context.Background())
	if err != nil {
		_ = st.Close()
		_ = b.Close(context.Background())
		return nil, fmt.Errorf("registry: default portal: %w", err)
	}
	log.Debug("registry open", "member_id", portal.MemberID, "domain", portal.Domain)
	authSvc := auth.New(st, auth.Options{BaseURL: publicURL(cfg), Log: log.With("component", "auth")})
	restSrv := rest.New(authSvc, rest.Options{MaxBody: cfg.MaxPayload, Log: log.With("component", "rest")})
	pushLog := log.With("component", "push")
	var sender push.Sender = push.LogSender{Log: pushLog}
	if cfg.PushWebhook != "" {
		sender = push.WebhookSender{URL: cfg.PushWebhook}
	}
	queue := push.New(st, push.Options{Sender: sender, Log: pushLog})
	pull.New(st, b, signer, pull.Options{
		ServerVersion: cfg.ServerVersion,
		Tenant:        portal.MemberID,
		PublicURL:     publicURL(cfg),
		SubPath:       cfg.SubPaths[0],
		PubWebPath:    cfg.PubWebPaths[0],
		Push:          queue,
		Presence:      b,
		Log:           log.With("component", "pull"),
	}).Register(restSrv)

	s := &Server{cfg: cfg, log: log, broker: b, realtime: rt, store: st, push: queue, cluster: cl}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.Handle("/oauth/token/", authSvc.TokenHandler())
	if cfg.InternalAddr != "" {
		mux.Handle("/", rt.PublicHandler())
		internal := http.NewServeMux()
		internal.HandleFunc("GET /healthz", s.serveHealth)
		internal.Handle("/", rt.TrustedHandler())
		s.internal = &http.Server{Handler: internal, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	} else {
		mux.Handle("/", rt.Handler())
	}
	s.http = &http.Server{
		// The REST server sees /rest/ paths before the mux, which would
		// redirect b24jssdk's /rest//METHOD.
		Handler:           restSrv.Mount(mux),
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: long polls are held for PollTimeout and WebSockets
		// for hours; their own deadlines bound every write.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if !s.healthy.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("shutting down\n"))
		return
	}
	if hc, ok := s.broker.(healthChecker); ok {
		if err := hc.Healthy(); err != nil {
			// Connections stay up and are served what can be served; a load
			// balancer sends new clients to healthy nodes meanwhile.
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(err.Error() + "\n"))
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Serve accepts on ln until ctx is cancelled, then drains: new connections
// are refused, every subscriber is told server_restart and closed, in-flight
// publishes finish, and the history is snapshotted.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// The push worker outlives ctx: it keeps delivering while requests
	// drain, and is stopped before the registry it reads is closed.
	pushCtx, stopPush := context.WithCancel(context.Background())
	pushDone := make(chan struct{})
	go func() {
		defer close(pushDone)
		s.push.Run(pushCtx)
	}()
	defer func() { stopPush(); <-pushDone }() // also on early returns

	internalDone := make(chan error, 1)
	if s.internal != nil {
		iln, err := net.Listen("tcp", s.cfg.InternalAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on %s (internal-addr): %w", s.cfg.InternalAddr, err)
		}
		go func() { internalDone <- s.internal.Serve(iln) }()
		s.log.Info("trusted routes listening", "addr", iln.Addr().String(), "pub", strings.Join(s.cfg.PubPaths, ","),
			"api", strings.Join(s.cfg.APIPaths, ","))
	} else if !isLoopback(ln.Addr()) {
		s.log.Warn("backend publish routes are served on the public listener: anyone who reaches it can publish to any channel; set --internal-addr",
			"addr", ln.Addr().String(), "pub", strings.Join(s.cfg.PubPaths, ","), "api", strings.Join(s.cfg.APIPaths, ","))
	}
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(ln) }()
	s.healthy.Store(true)
	s.log.Info("pushpull listening", "addr", ln.Addr().String(), "data_dir", s.cfg.DataDir,
		"sub", strings.Join(s.cfg.SubPaths, ","), "pub", strings.Join(s.cfg.PubPaths, ","))

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
	s.healthy.Store(false)
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()

	// Stop accepting and wait for plain requests while the realtime side
	// drains the connections it holds (hijacked WebSockets and long polls,
	// which http.Server.Shutdown would otherwise wait 40 s for).
	httpDone := make(chan error, 1)
	go func() {
		err := s.http.Shutdown(sctx)
		if s.internal != nil {
			err = errors.Join(err, s.internal.Shutdown(sctx))
			if serr := <-internalDone; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
		}
		httpDone <- err
	}()
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
	if err := s.broker.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("close broker: %w", err))
	}
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
		log.Warn("cannot raise the open-file limit", "err", err, "limit", l.After)
	case l.Raised():
		log.Info("raised the open-file limit", "from", l.Before, "to", l.After)
	default:
		log.Info("open-file limit", "limit", l.After)
	}
}
