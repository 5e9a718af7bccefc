package realtime

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/token"
)

// rpcConn is what a protocol version 5 (jsonRpc=true) connection adds to
// its session: who it is and what it watches.
type rpcConn struct {
	tenant string // the token's iss; "" for a CHANNEL_ID connection
	user   int64  // the token's sub; 0 for none
	// userChan is channel.User(tenant, user): messages addressed to the
	// user arrive through it, with that user's user_params.
	userChan channel.ID
	channels []channel.ID // from the token's chan or CHANNEL_ID, for listChannels

	// recent are the last delivered ids, guarded by session.mu: a message
	// can reach a connection through its user and through a channel, and
	// the JSON-RPC frame does not name the channel, so it is sent once.
	recent [8]message.ID
	next   int

	// missed counts pings sent since the peer last sent anything.
	missed atomic.Int32

	mu       sync.Mutex
	closed   bool
	present  bool                 // counted in the user's presence (a WebSocket)
	watching map[int64]channel.ID // status subscriptions: user → channel.Status
}

// isJSONRPC reports whether the subscribe query asks for protocol version 5.
// The clients send the literal "true".
func isJSONRPC(q url.Values) bool { return q.Get("jsonRpc") == "true" }

// openSession builds the session a subscribe query asks for, or the reason
// to refuse it (a *protoError, 4010 for any bad credential).
func (s *Server) openSession(ctx context.Context, q url.Values) (*session, error) {
	if isJSONRPC(q) {
		sess, err := s.openRPCSession(ctx, q)
		if err == nil {
			bindTenant(ctx, sess)
		}
		return sess, err
	}
	elems, err := s.parseSubscribe(ctx, q)
	if err != nil {
		return nil, err
	}
	sess := newSession(s, elems, subscriberFormat(q))
	bindTenant(ctx, sess)
	return sess, nil
}

// openRPCSession authenticates a version 5 connection by token= (preferred,
// as the clients do) or CHANNEL_ID. A token's channels are trusted as
// signed by it; its user is reached through channel.User.
func (s *Server) openRPCSession(ctx context.Context, q url.Values) (*session, error) {
	rc := &rpcConn{}
	var elems []channel.Element
	if tok := q.Get("token"); tok != "" {
		c, err := token.Verify(tok, s.tokenKeyOf(ctx), time.Now())
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errWrongChannelID, err)
		}
		if len(c.Channels) > s.opt.MaxChannelsPerRequest {
			return nil, fmt.Errorf("%w: %d channels in the token", errWrongChannelID, len(c.Channels))
		}
		rc.tenant, rc.user, rc.channels = scopeUsers(ctx, c.Issuer), c.User, c.Channels
		elems = scopeElements(ctx, tokenElements(c))
	} else {
		var err error
		if elems, err = s.parseSubscribe(ctx, q); err != nil {
			return nil, err
		}
		for _, e := range elems {
			rc.channels = append(rc.channels, scopeID(ctx, e.ID)) // the ids the client knows
		}
	}
	sess := newSession(s, elems, formatRPC)
	sess.rpc = rc
	if rc.user > 0 {
		rc.userChan = channel.User(rc.tenant, rc.user)
		sess.subs = append(sess.subs, hub.Subscription{Channel: rc.userChan})
		sess.chans = append(sess.chans, rc.userChan)
	}
	return sess, nil
}

// tokenElements turns a token's channels into subscriptions. Bitrix's pull
// module lists a private channel's public id right after it: pushpull's
// config.get writes shared, private, public; a Bitrix token without a user
// holds private, public. The public id becomes the private channel's alias,
// as a version 4 "private:public" subscription makes it, so that a client
// publish addressed to it (sendMessageToChannels) reaches this connection.
// The token's signature vouches for the pairing.
func tokenElements(c token.Claims) []channel.Element {
	ids := c.Channels
	paired := len(ids) == 3 || (len(ids) == 2 && c.User == 0)
	elems := make([]channel.Element, 0, len(ids))
	for i := 0; i < len(ids); i++ {
		e := channel.Element{ID: ids[i]}
		if paired && i == len(ids)-2 {
			e.Public, e.HasPublic = ids[i+1], true
			i++
		}
		elems = append(elems, e)
	}
	return elems
}

// admit decides, under session.mu, whether a live delivery is new to this
// connection, and picks the delivery that carries the connection's
// user_params when the message has some for its user.
func (rc *rpcConn) admit(d *hub.Delivery) (*hub.Delivery, bool) {
	for _, id := range rc.recent {
		if id == d.Msg.ID {
			return nil, false
		}
	}
	rc.recent[rc.next] = d.Msg.ID
	rc.next = (rc.next + 1) % len(rc.recent)
	return rc.viaUser(d), true
}

// viaUser returns d, or the same message through the user's channel when
// it carries user_params for this user and came through another channel.
func (rc *rpcConn) viaUser(d *hub.Delivery) *hub.Delivery {
	if rc.user > 0 && d.Channel != rc.userChan && d.Msg.UserParams[rc.userChan] != nil {
		return hub.NewDelivery(d.Msg, rc.userChan)
	}
	return d
}
