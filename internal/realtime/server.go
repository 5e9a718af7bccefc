// Package realtime is the push server's HTTP face: the subscribe endpoint
// (WebSocket and long polling), backend publishing on /pub/, and the
// statistics route. It turns requests into broker and hub calls; it holds the
// connections.
package realtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/netpoll"
	"github.com/pushpull/pushpull/internal/tenant"
)

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
		sessions: make(map[member]struct{}),
		limit:    newConnLimit[member](opt.MaxConnPerChannel),
		drained:  make(chan struct{}),
		stopPing: make(chan struct{}),
		pingDone: make(chan struct{}),

		rpcPingDone: make(chan struct{}),
		writers:     newWriterPool(),
		metrics:     newCounters(),
		keptIdle:    keptPollIdle,
	}
	s.pubLimits = newPublishLimits(opt.ClientPublishRate, opt.ClientPublishIPRate, opt.ClientPublishTargetRate)
	if opt.Tenants != nil {
		opt.Tenants.OnRemove(s.cutTenant)
	}
	go s.pingEvery(opt.PingInterval, s.pingDone, false)
	go s.pingEvery(opt.RPCPingInterval, s.rpcPingDone, true)
	return s
}

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
	list := make([]member, 0, len(s.sessions))
	for sess := range s.sessions {
		list = append(list, sess)
	}
	if len(s.sessions) == 0 {
		close(s.drained)
	}
	s.sessMu.Unlock()
	// Sessions kept between polls end now, as clients between two polls
	// did before any was kept; restart skips them once detached.
	s.kept.close()
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

// pingEvery keeps WebSockets alive through proxies and finds dead peers
// (wsConn.ping): every interval until Shutdown it pings the sessions whose
// protocol pings with text messages, or with control frames (text false),
// and closes done when it stops. Two loops run, one of each: version 5
// clients expect text pings on a clock of their own.
func (s *Server) pingEvery(interval time.Duration, done chan struct{}, text bool) {
	keep := func(sess *session) bool { return (sess.proto.keepalive().text != nil) == text }
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
			sess.t.ping()
		}
	}
}

// liveSessions returns the registered sessions keep selects.
func (s *Server) liveSessions(keep func(*session) bool) []*session {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	var list []*session
	for m := range s.sessions {
		if sess, ok := m.(*session); ok && keep(sess) {
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
func (s *Server) poller() *netpoll.Poller {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.poll != nil || s.pollStopped {
		return s.poll
	}
	p, err := netpoll.New(s.log)
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
		p.CloseWhenIdle()
	}
}

// cutTenant closes every connection of a tenant that is no longer served.
func (s *Server) cutTenant(t *tenant.Tenant) {
	s.forgetTenantFormats(t)
	list := s.liveSessions(func(sess *session) bool { return sess.tenant == t })
	for _, sess := range list {
		sess.evict(errWrongClientID)
	}
	if len(list) > 0 {
		s.log.Info("closed the connections of an unregistered tenant", "client_id", t.ClientID, "host", t.Host, "count", len(list))
	}
}
