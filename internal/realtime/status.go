package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

// Users' online status for protocol version 5. A user is online while it
// has at least one version 5 WebSocket (long polls come and go with every
// answer, so they would make users flicker). Connections count on the
// user's channel.Presence in the broker, so a cluster agrees; the node that
// sees the count reach 1 or 0 announces it on channel.Status, which the
// watchers' connections listen on, and records the last-seen time.
//
// presenceMu orders this node's changes of one user, so that on one node
// every 0→1 and 1→0 is announced exactly once. Two nodes changing the same user at the
// same instant may both or neither announce: status is advisory.

// attached counts a WebSocket of a user in its presence; a long poll comes
// and goes with every answer and would make the user flicker.
func (rc *rpcConn) attached(ctx context.Context, sess *session) {
	if rc.user > 0 && sess.t.streams() {
		sess.srv.userArrived(ctx, sess)
	}
}

// detached releases what the connection holds beyond its channels: its
// watches and its presence.
func (rc *rpcConn) detached(sess *session) { sess.srv.rpcDetached(sess) }

// userArrived counts a WebSocket of a user and announces it if it is the
// user's first.
func (s *Server) userArrived(ctx context.Context, sess *session) {
	rc := rpcOf(sess)
	pc := channel.Presence(rc.tenant, rc.user)
	mu := s.presenceLock(pc)
	mu.Lock()
	defer mu.Unlock()
	// Under rc.mu, so that a connection cut meanwhile (closed) is not
	// counted after its detach has run.
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		return
	}
	if err := s.broker.Attach(ctx, []channel.ID{pc}); err != nil {
		s.log.Warn("presence attach failed", "err", err)
		return
	}
	rc.present = true
	if n, err := s.broker.Online(ctx, []channel.ID{pc}); err == nil && n[0] == 1 {
		s.announceStatus(ctx, rc.tenant, rc.user, true)
	}
}

// userLeft undoes userArrived: the user was seen now, and is gone if this
// was its last WebSocket.
func (s *Server) userLeft(sess *session) {
	rc := rpcOf(sess)
	rc.mu.Lock()
	present := rc.present
	rc.present = false
	rc.mu.Unlock()
	if !present {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.WriteTimeout)
	defer cancel()
	pc := channel.Presence(rc.tenant, rc.user)
	mu := s.presenceLock(pc)
	mu.Lock()
	defer mu.Unlock()
	if err := s.broker.Detach(ctx, []channel.ID{pc}); err != nil {
		s.log.Warn("presence detach failed", "err", err)
	}
	if n, err := s.broker.Online(ctx, []channel.ID{pc}); err == nil && n[0] == 0 {
		s.announceStatus(ctx, rc.tenant, rc.user, false)
	}
	// Last, so that a recorded time means this departure is settled.
	if err := s.broker.SetLastSeen(ctx, map[channel.ID]time.Time{rc.userChan: time.Now()}); err != nil {
		s.log.Warn("last seen not recorded", "err", err)
	}
}

// maxUsersPerCall bounds getUsersLastSeen lists and a connection's status
// subscriptions.
const maxUsersPerCall = 1000

// presenceLock is the lock of the user whose presence channel is pc; the
// id is an md5, so any byte is evenly spread.
func (s *Server) presenceLock(pc channel.ID) *sync.Mutex {
	return &s.presenceMu[pc[0]%presenceStripes]
}

// statusBody is the event the clients' online handlers expect
// (docs/protocol-v5.md, "Decisions", status events): module online, command
// userStatusChange. extra has server_time_unix, without which b24jssdk drops
// online events as stale; no revision_web, so that the clients' revision
// check leaves it alone (b24jssdk PullClient, BX.PullClient).
type statusBody struct {
	ModuleID string       `json:"module_id"`
	Command  string       `json:"command"`
	Params   statusParams `json:"params"`
	Extra    statusExtra  `json:"extra"`
}

type statusParams struct {
	UserID int64 `json:"user_id"`
	Online bool  `json:"online"`
}

type statusExtra struct {
	ServerTime     string  `json:"server_time"`
	ServerTimeUnix float64 `json:"server_time_unix"`
}

// announceStatus publishes a user's change to its watchers, live only: a
// watcher that reconnects asks getUsersLastSeen instead. Most users have
// no watcher; their changes are not published at all.
func (s *Server) announceStatus(ctx context.Context, tenant string, user int64, online bool) {
	sc := channel.Status(tenant, user)
	if n, err := s.broker.Online(ctx, []channel.ID{sc}); err == nil && n[0] == 0 {
		return
	}
	now := time.Now()
	body, err := json.Marshal(statusBody{ModuleID: "online", Command: "userStatusChange",
		Params: statusParams{UserID: user, Online: online},
		Extra:  statusExtra{ServerTime: now.Format(time.RFC3339), ServerTimeUnix: float64(now.UnixMicro()) / 1e6}})
	if err == nil {
		err = s.broker.Publish(ctx, &message.Message{Body: body, Expiry: 0,
			Receivers: []message.Receiver{{ID: sc}},
			Sender:    message.Sender{Type: message.SenderBackend}})
	}
	if err != nil {
		s.log.Warn("user status not announced", "user", user, "online", online, "err", err)
	}
}

// watch makes sess receive user's status changes.
func (s *Server) watch(ctx context.Context, sess *session, user int64) *wire.RPCError {
	rc := rpcOf(sess)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.closed {
		return nil
	}
	if _, ok := rc.watching[user]; ok {
		return nil
	}
	if len(rc.watching) >= maxUsersPerCall {
		return invalidParams(fmt.Sprintf("a connection watches at most %d users", maxUsersPerCall))
	}
	sc := channel.Status(rc.tenant, user)
	if err := s.broker.Attach(ctx, []channel.ID{sc}); err != nil {
		s.log.Warn("status watch failed", "err", err)
		return wire.NewRPCError(wire.RPCInternalError, "")
	}
	s.hub.Attach(sess, []hub.Subscription{{Channel: sc}})
	if rc.watching == nil {
		rc.watching = make(map[int64]channel.ID)
	}
	rc.watching[user] = sc
	s.log.Debug("status watched", "user", user, "watches", len(rc.watching))
	return nil
}

// unwatch undoes watch; unknown users are ignored.
func (s *Server) unwatch(ctx context.Context, sess *session, user int64) {
	rc := rpcOf(sess)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	sc, ok := rc.watching[user]
	if !ok {
		return
	}
	delete(rc.watching, user)
	s.dropWatch(ctx, sess, sc)
}

func (s *Server) dropWatch(ctx context.Context, sess *session, sc channel.ID) {
	s.hub.Detach(sess, []hub.Subscription{{Channel: sc}})
	if err := s.broker.Detach(ctx, []channel.ID{sc}); err != nil {
		s.log.Warn("status unwatch failed", "err", err)
	}
}

// rpcDetached releases what a version 5 connection holds beyond its
// channels: its watches and its presence.
func (s *Server) rpcDetached(sess *session) {
	rc := rpcOf(sess)
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.WriteTimeout)
	defer cancel()
	rc.mu.Lock()
	rc.closed = true
	for _, sc := range rc.watching {
		s.dropWatch(ctx, sess, sc)
	}
	rc.watching = nil
	rc.mu.Unlock()
	s.userLeft(sess)
}

// usersLastSeen answers getUsersLastSeen (broker.UsersLastSeen), keyed by
// the user ids as JSON object keys.
func (s *Server) usersLastSeen(ctx context.Context, tenant string, users []int64) (map[string]int64, error) {
	seen, err := broker.UsersLastSeen(ctx, s.broker, tenant, users, time.Now())
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(seen))
	for u, sec := range seen {
		out[strconv.FormatInt(u, 10)] = sec
	}
	return out, nil
}
