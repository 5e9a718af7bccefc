package realtime

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/token"
	"github.com/pushpull/pushpull/internal/wire"
)

// rpcConn is protocol version 5 (jsonRpc=true), one value per connection:
// who it is and what it watches. Deliveries are incoming.message
// notifications; the client's text messages are JSON-RPC calls, answered on
// the socket, or the ping, pong and mack frames (jsonrpc_frames.go).
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

	mu       sync.Mutex
	closed   bool
	present  bool                 // counted in the user's presence (a WebSocket)
	watching map[int64]channel.ID // status subscriptions: user → channel.Status
}

// formatRPC frames incoming.message notifications, a batch array when
// several are queued (both clients accept either).
var formatRPC = format{slot: 3, encode: wire.AppendIncomingMessage, contentType: "application/json", opcode: ws.OpText,
	open: []byte("["), sep: []byte(","), close: []byte("]"), bare: true}

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
	sess := newSession(s, elems, rc)
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

func (rc *rpcConn) format() format { return formatRPC }

// replayed picks, as admit does, the delivery with the user's user_params.
func (rc *rpcConn) replayed(d *hub.Delivery) *hub.Delivery { return rc.viaUser(d) }

// rpcOf is the version 5 side of sess, for the version 5 code that serves
// it (status.go, jsonrpc_methods.go).
func rpcOf(sess *session) *rpcConn {
	rc, _ := sess.proto.(*rpcConn)
	return rc
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
