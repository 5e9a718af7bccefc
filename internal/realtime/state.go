package realtime

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/netpoll"
)

// presenceStripes spreads users over locks: a reconnect storm of many users
// must not queue behind one lock around broker round trips.
const presenceStripes = 64

// Server serves the push-server routes. Create it with New, mount Handler,
// and call Shutdown before closing the broker.
type Server struct {
	opt    Options
	broker broker.Broker
	hub    *hub.Hub
	signer *channel.Signer
	// verified remembers the subscribe lists signer and the portals'
	// signers have passed (verified.go).
	verified verifiedLists
	// tokenKey verifies version 5 connection tokens: the signer's key.
	tokenKey []byte
	log      *slog.Logger
	start    time.Time
	uid      string

	limit     *connLimit[member]
	pubLimits *publishLimits

	sessMu   sync.Mutex
	sessions map[member]struct{}
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
	poll        *netpoll.Poller
	pollStopped bool

	writers *writerPool

	// kept are the long polls' sessions kept for their clients' next
	// polls, each for at most keptIdle (keptpoll.go).
	kept     keptPolls
	keptIdle time.Duration

	// tenantFormats holds shared mode's per-tenant text formats
	// (tenant_session.go).
	tenantFormats sync.Map
}

// member is a connection the server holds: a session (session.go). The
// server tells it of a shutdown, and the connection cap of one that a
// newer connection pushes out.
type member interface {
	restart(m *message.Message)
	kill(reason string)
	evict(e *protoError)
}

// register adds a connection, unless the server is shutting down.
func (s *Server) register(m member) error {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.draining {
		return errDraining
	}
	s.sessions[m] = struct{}{}
	return nil
}

// unregister removes a connection; the last one ends a shutdown.
func (s *Server) unregister(m member) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if _, ok := s.sessions[m]; !ok {
		return
	}
	delete(s.sessions, m)
	if s.draining && len(s.sessions) == 0 {
		close(s.drained)
	}
}

var errDraining = errors.New("server is shutting down")
