package server

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/pushpull/pushpull/internal/auth"
	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/console"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/pull"
	"github.com/pushpull/pushpull/internal/push"
	"github.com/pushpull/pushpull/internal/realtime"
	"github.com/pushpull/pushpull/internal/rest"
	"github.com/pushpull/pushpull/internal/store"
)

// newRealtime builds the push-server routes (subscribe, publish, API and
// status) over the broker b, delivering through h.
func newRealtime(cfg config.Config, clustered bool, b broker.Broker, h *hub.Hub, signer *channel.Signer, sm *sharedMode, log *slog.Logger) *realtime.Server {
	opt := realtime.Options{
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
		WriteMergeDelay:       cfg.WriteMergeDelay,
		SendQueue:             cfg.SendQueue,
		MaxConnPerChannel:     cfg.MaxConnPerChannel,
		ServerVersion:         cfg.ServerVersion,
		ClusterMode:           clustered,

		ClientPublishRate:       realtime.RateLimit{PerSecond: cfg.ClientPublishRate, Burst: cfg.ClientPublishBurst},
		ClientPublishIPRate:     realtime.RateLimit{PerSecond: cfg.ClientPublishIPRate, Burst: cfg.ClientPublishIPBurst},
		ClientPublishTargetRate: realtime.RateLimit{PerSecond: cfg.ClientPublishTargetRate, Burst: cfg.ClientPublishTargetBurst},
	}
	if sm != nil {
		opt.Tenants, opt.TenantVerifier = sm.dir, sm.verifier
		opt.RegisterPaths, opt.SystemctlPaths = cfg.RegisterPaths, cfg.SystemctlPaths
		// Only the exact path reaches it (cloudClientPublish).
		opt.PubWebPaths = append(append([]string(nil), opt.PubWebPaths...), cloudRESTPath)
	}
	return realtime.New(opt, b, h, signer, log)
}

// api is the REST side: OAuth, the REST dispatcher with the pull.* methods,
// and the queue those methods hand mobile pushes to.
type api struct {
	auth *auth.Service
	rest *rest.Server
	push *push.Queue
	pull *pull.Service
}

// newAPI builds the REST side on the registry st; the pull.* methods publish
// through b and sign channels with signer.
func newAPI(cfg config.Config, st store.Store, portal store.Portal, b broker.Broker, signer *channel.Signer, uses *console.TokenUses, clientID string, log *slog.Logger) api {
	authSvc := auth.New(st, auth.Options{BaseURL: publicURL(cfg), Log: log.With("component", "auth"), Used: uses.Used})
	restSrv := rest.New(authSvc, rest.Options{MaxBody: cfg.MaxPayload, Log: log.With("component", "rest")})
	pushLog := log.With("component", "push")
	var sender push.Sender = push.LogSender{Log: pushLog}
	if cfg.PushWebhook != "" {
		sender = push.WebhookSender{URL: cfg.PushWebhook}
	}
	queue := push.New(st, push.Options{Sender: sender, Log: pushLog})
	pullSvc := pull.New(st, b, signer, pull.Options{
		ServerVersion: cfg.ServerVersion,
		Tenant:        portal.MemberID,
		ClientID:      clientID,
		PublicURL:     publicURL(cfg),
		SubPath:       cfg.SubPaths[0],
		PubWebPath:    cfg.PubWebPaths[0],
		Push:          queue,
		Presence:      b,
		Log:           log.With("component", "pull"),
	})
	pullSvc.Register(restSrv)
	return api{auth: authSvc, rest: restSrv, push: queue, pull: pullSvc}
}

// mountRoutes sets up the HTTP servers: the public one with the REST API,
// OAuth, health and the realtime routes, and, unless --internal-addr is
// "same", the internal one with the trusted realtime routes.
func (s *Server) mountRoutes(a api) {
	cfg, log, rt := s.cfg, s.log, s.realtime
	s.push = a.push
	bodyLog := log.With("component", "http")
	ids := newRequestIDs()
	trusted := cfg.TrustedProxyPrefixes()
	s.admit = newAdmission(cfg.LargeRequestSlots(), cfg.LargeRequestHandlers(), cfg.BodyReadTimeout, bodyLog)
	s.admit.pace = newPacer(cfg.LargeRequestRate, time.Now)
	s.admit.paceAll = newPacer(cfg.LargeRequestTotalRate(), time.Now)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("/oauth/token/", a.auth.TokenHandler())
	if cfg.TrustedOnAddr() {
		// /metrics goes with the trusted routes: it tells who publishes
		// how much.
		mux.Handle("GET /metrics", s.metrics.Handler())
		mux.HandleFunc("GET "+StatusPath, s.serveStatus)
		mux.Handle("/", rt.Handler())
		mux.Handle(console.Prefix, s.console.Handler())
	} else {
		mux.Handle("/", rt.PublicHandler())
		internal := http.NewServeMux()
		internal.HandleFunc("GET /healthz", s.serveHealth)
		internal.HandleFunc("GET /readyz", s.serveReady)
		internal.Handle("GET /metrics", s.metrics.Handler())
		internal.HandleFunc("GET "+StatusPath, s.serveStatus)
		internal.Handle("/", rt.TrustedHandler())
		internal.Handle(console.Prefix, s.console.Handler())
		s.internal = &http.Server{
			Handler:           forwardedFor(trusted, ids.wrap(bodyDeadline(cfg.BodyReadTimeout, bodyLog, internal))),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	var restMux http.Handler = a.rest.Mount(mux)
	if s.shared != nil {
		restMux = cloudClientPublish(rt.PublicHandler(), restMux)
	}
	s.http = &http.Server{
		// The REST server sees /rest/ paths before the mux, which would
		// redirect b24jssdk's /rest//METHOD.
		// Admission comes first, so that the body-read deadline starts when
		// a large request is admitted, not while it waits for a slot. The
		// internal listener has none: its trusted publishes must not queue
		// behind public traffic. The request id comes before both, so that
		// a refused request has one too; the client's address behind a
		// trusted proxy comes first of all, for every one of them.
		Handler: forwardedFor(trusted, ids.wrap(s.admit.wrap(
			bodyDeadline(cfg.BodyReadTimeout, bodyLog, restMux)))),
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: long polls are held for PollTimeout and WebSockets
		// for hours; their own deadlines bound every write. No ReadTimeout
		// either, for the same reason: bodyDeadline bounds body reads.
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
