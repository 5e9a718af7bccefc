// Package realtime is the push server's HTTP face: the subscribe endpoint
// (WebSocket and long polling), backend publishing on /pub/, and the
// statistics route. It turns requests into broker and hub calls; it holds the
// connections.
package realtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

// Options configure a Server. The zero value is not usable; the server
// package fills every field from config.Config.
type Options struct {
	SubPaths    []string
	PubPaths    []string
	PubWebPaths []string
	// APIPaths are the backend's JSON-RPC prefixes (protocol version 5), trusted.
	APIPaths []string
	StatPath string

	MaxPayload            int64
	MaxChannelsPerRequest int
	MessageTTL            time.Duration
	Replay                broker.HistoryLimit
	// ReplayPerConnection bounds the messages a WebSocket recovery sends
	// on one connection (it reads page after page of Replay); the client
	// reconnects for the rest. 0: 10,000.
	ReplayPerConnection int

	PollTimeout  time.Duration
	PingInterval time.Duration
	// RPCPingInterval is how often version 5 connections get a text ping.
	RPCPingInterval time.Duration
	WriteTimeout    time.Duration
	SendQueue       int
	// MaxConnPerChannel caps the connections on one private channel with a
	// public id; the oldest is closed with 4029 beyond it. 0: no cap.
	MaxConnPerChannel int
	// GoroutineReaders gives every WebSocket a reader goroutine of its own
	// instead of reading from the epoll poller (Linux; elsewhere they always
	// have one). It costs a goroutine stack per idle connection.
	GoroutineReaders bool
	// ServerVersion is the push-server version the config advertises (3, 4
	// or 5); /pub/ answers its errors as that version's server does. 0 is
	// taken as 4.
	ServerVersion int
	// ClusterMode says the broker is shared by several nodes (Redis), for
	// /server-stat/.
	ClusterMode bool

	// ClientPublishRate limits the messages (one per receiver) a client
	// publishes over one WebSocket connection, ClientPublishIPRate those of
	// one client address on the HTTP route, and ClientPublishTargetRate the
	// client messages one channel receives. Zero values: no limit.
	ClientPublishRate       RateLimit
	ClientPublishIPRate     RateLimit
	ClientPublishTargetRate RateLimit
}

// DefaultRPCPingInterval is how often version 5 connections are pinged
// unless told otherwise: the clients reconnect after 20 s without a ping.
const DefaultRPCPingInterval = 10 * time.Second

// Server serves the push-server routes. Create it with New, mount Handler,
// and call Shutdown before closing the broker.
type Server struct {
	opt    Options
	broker broker.Broker
	hub    *hub.Hub
	signer *channel.Signer
	// tokenKey verifies version 5 connection tokens: the signer's key.
	tokenKey []byte
	log      *slog.Logger
	start    time.Time
	uid      string

	limit     *connLimit
	pubLimits *publishLimits

	sessMu   sync.Mutex
	sessions map[*session]struct{}
	draining bool
	drained  chan struct{} // closed when draining and the last session is gone

	websockets atomic.Int64
	pollings   atomic.Int64
	daily      dailyCounter
	metrics    *counters

	stopPing    chan struct{}
	pingDone    chan struct{}
	rpcPingDone chan struct{}

	// presenceMu orders this node's changes of users' presence, striped by
	// user so that one user's changes are in order and others' do not wait
	// (status.go).
	presenceMu [presenceStripes]sync.Mutex

	// pollMu guards the WebSocket poller, started with the first WebSocket;
	// after Shutdown it stops with the last socket.
	pollMu      sync.Mutex
	poll        *poller
	pollStopped bool

	writers *writerPool
}

// New returns a Server publishing through b and delivering through h, which
// must be the broker's Deliverer.
func New(opt Options, b broker.Broker, h *hub.Hub, signer *channel.Signer, log *slog.Logger) *Server {
	if opt.RPCPingInterval <= 0 {
		opt.RPCPingInterval = DefaultRPCPingInterval
	}
	s := &Server{
		opt:      opt,
		broker:   b,
		hub:      h,
		signer:   signer,
		tokenKey: signer.Key(),
		log:      log,
		start:    time.Now(),
		uid:      fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()),
		sessions: make(map[*session]struct{}),
		limit:    newConnLimit(opt.MaxConnPerChannel),
		drained:  make(chan struct{}),
		stopPing: make(chan struct{}),
		pingDone: make(chan struct{}),

		rpcPingDone: make(chan struct{}),
		writers:     newWriterPool(),
		metrics:     newCounters(),
	}
	s.pubLimits = newPublishLimits(opt)
	go s.pingLoop()
	go s.rpcPingLoop()
	return s
}

// Handler routes every push-server path, public and trusted, by prefix as
// the reference servers do, so deployments can mount the subscribe route
// under /bitrix/sub/, /subws/ and so on.
func (s *Server) Handler() http.Handler { return s.routes(true, true) }

// PublicHandler serves what clients use: subscribing and client publishing.
func (s *Server) PublicHandler() http.Handler { return s.routes(true, false) }

// TrustedHandler serves what only backends may use: /pub/ (publish to any
// channel without a signature) and the statistics.
func (s *Server) TrustedHandler() http.Handler { return s.routes(false, true) }

func (s *Server) routes(public, trusted bool) http.Handler {
	type route struct {
		prefix string
		h      http.HandlerFunc
		kind   dayKind
		counts bool // in the daily statistics
	}
	var routes []route
	if public {
		for _, p := range s.opt.SubPaths {
			routes = append(routes, route{p, s.serveSub, dayPolling, true})
		}
		for _, p := range s.opt.PubWebPaths {
			routes = append(routes, route{p, s.servePubWeb, dayClientPublish, true})
		}
	}
	if trusted {
		for _, p := range s.opt.PubPaths {
			routes = append(routes, route{p, s.servePub, dayPublish, true})
		}
		for _, p := range s.opt.APIPaths {
			routes = append(routes, route{p, s.serveAPI, dayPublish, true})
		}
		if s.opt.StatPath != "" {
			routes = append(routes, route{s.opt.StatPath, s.serveStat, 0, false})
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, rt := range routes {
			if strings.HasPrefix(r.URL.Path, rt.prefix) {
				if rt.counts && r.Method != http.MethodOptions {
					s.countRequest(r, rt.kind)
				}
				rt.h(w, r)
				return
			}
		}
		writeText(w, http.StatusNotFound, "")
	})
}

// writeText answers with a plain-text body and the CORS header every push
// server response carries.
func writeText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	if body != "" {
		_, _ = w.Write([]byte(body))
	}
}

// The request headers each route's preflight allows. The reference servers
// allow only the two conditional headers everywhere, which refuses a browser
// client that labels its body (Content-Type: application/octet-stream, say)
// and so needs a preflight; the routes read neither label nor conditionals,
// so allowing them changes nothing the route does (docs/decisions.md,
// "CORS preflights").
const (
	subAllowHeaders  = "If-Modified-Since, If-None-Match"
	postAllowHeaders = "Content-Type, If-Modified-Since, If-None-Match"
	pubAllowHeaders  = "Content-Type, Message-Expiry, If-Modified-Since, If-None-Match"
)

// serveOptions answers a CORS preflight with the methods the route serves
// and the request headers it takes, in the reference servers' answer shape
// (200, text/plain, empty body).
func serveOptions(w http.ResponseWriter, methods, headers string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", headers)
	writeText(w, http.StatusOK, "")
}

// acceptPost lets POST through to a POST-only route; it answers OPTIONS
// (CORS preflight) and refuses other methods itself.
func acceptPost(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodPost:
		return true
	case http.MethodOptions:
		serveOptions(w, "POST, OPTIONS", postAllowHeaders)
	default:
		methodNotAllowed(w, "POST, OPTIONS")
	}
	return false
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeText(w, http.StatusMethodNotAllowed, "Method not allowed.")
}

// reasonServerRestart is the close reason of a graceful shutdown (1001).
const reasonServerRestart = "server restart"

// reasonReplayContinues is the close reason (1001) of a WebSocket whose
// recovery was more than one connection replays: the client reconnects with
// the last mid it got and the replay continues from there.
const reasonReplayContinues = "replay continues"

// writeError answers an HTTP request with a numbered error, as "CODE: Text".
func writeError(w http.ResponseWriter, e *protoError) {
	writeText(w, e.httpStatus(), e.Error())
}

func (s *Server) register(sess *session) error {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.draining {
		return errDraining
	}
	s.sessions[sess] = struct{}{}
	return nil
}

func (s *Server) unregister(sess *session) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if _, ok := s.sessions[sess]; !ok {
		return
	}
	delete(s.sessions, sess)
	if s.draining && len(s.sessions) == 0 {
		close(s.drained)
	}
}

var errDraining = errors.New("server is shutting down")

// Shutdown tells every connection the server is restarting (the clients'
// server_restart command, which makes them wait 15 s before reconnecting
// instead of storming back), closes WebSockets with 1001 and answers pending
// long polls. It returns when all connections are gone or ctx ends, in which
// case the rest are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.sessMu.Lock()
	if s.draining {
		s.sessMu.Unlock()
		return nil
	}
	s.draining = true
	list := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		list = append(list, sess)
	}
	if len(s.sessions) == 0 {
		close(s.drained)
	}
	s.sessMu.Unlock()
	close(s.stopPing)
	<-s.pingDone
	<-s.rpcPingDone

	if len(list) > 0 {
		restart, err := s.serverRestartMessage(ctx)
		if err != nil {
			s.log.Warn("cannot build server_restart message; closing connections without it", "err", err)
		}
		for _, sess := range list {
			sess.restart(restart)
		}
		s.log.Info("draining connections", "count", len(list))
	}
	select {
	case <-s.drained:
		s.stopPoller()
		s.writers.stop()
		return nil
	case <-ctx.Done():
		s.sessMu.Lock()
		for sess := range s.sessions {
			list = append(list, sess)
		}
		s.sessMu.Unlock()
		for _, sess := range list {
			sess.kill("shutdown timeout")
		}
		s.stopPoller()
		s.writers.stop()
		return fmt.Errorf("shutdown: %d connections cut: %w", len(list), ctx.Err())
	}
}

// pingLoop keeps WebSockets alive through proxies and finds dead peers: a
// connection that sent nothing (not even the pong to the last ping) during a
// whole interval is dropped. Version 5 connections have their own text
// pings (rpcPingLoop).
func (s *Server) pingLoop() {
	s.pingEvery(s.opt.PingInterval, s.pingDone,
		func(sess *session) bool { return sess.ws != nil && sess.rpc == nil },
		func(sess *session) { sess.ws.ping(sess) })
}

// pingEvery calls ping, every interval until Shutdown, on the sessions keep
// selects, and closes done when it stops.
func (s *Server) pingEvery(interval time.Duration, done chan struct{}, keep func(*session) bool, ping func(*session)) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopPing:
			return
		case <-t.C:
		}
		for _, sess := range s.liveSessions(keep) {
			ping(sess)
		}
	}
}

// liveSessions returns the registered sessions keep selects.
func (s *Server) liveSessions(keep func(*session) bool) []*session {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	var list []*session
	for sess := range s.sessions {
		if keep(sess) {
			list = append(list, sess)
		}
	}
	return list
}

func (s *Server) serverRestartMessage(ctx context.Context) (*message.Message, error) {
	id, err := s.broker.NewID(ctx)
	if err != nil {
		return nil, fmt.Errorf("server_restart id: %w", err)
	}
	return newServerRestart(id, time.Now()), nil
}

// poller returns the WebSocket poller, starting it on first use; nil where
// there is none (not Linux, or it could not start), which leaves every
// WebSocket its own reader goroutine.
func (s *Server) poller() *poller {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.poll != nil || s.pollStopped {
		return s.poll
	}
	p, err := newPoller(s.log)
	if err != nil {
		s.log.Info("websocket readers run on goroutines: no poller", "err", err)
		s.pollStopped = true
		return nil
	}
	s.poll = p
	return p
}

func (s *Server) stopPoller() {
	s.pollMu.Lock()
	p := s.poll
	s.poll, s.pollStopped = nil, true
	s.pollMu.Unlock()
	if p != nil {
		p.closeWhenIdle()
	}
}
