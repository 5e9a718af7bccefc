package realtime

import (
	"context"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/hub"
)

// protocol is one subscribe protocol: text (version 3), JSON, protobuf
// (version 4) or JSON-RPC (version 5). openSession (connect.go) chooses one
// value per connection at the handshake; from then on the session and its
// transport ask it, never which protocol it is. A protocol with no state of
// its own is one shared value; one with state (version 5) is a value per
// connection.
//
// Adding a protocol is a file with a type that implements this, and its
// line in openSession.
type protocol interface {
	// format frames the protocol's deliveries.
	format() format
	// admit decides whether a live delivery is sent, and may replace it
	// (another channel's delivery of the same message). It runs under the
	// session's lock and the hub's, on the fan-out path.
	admit(d *hub.Delivery) (*hub.Delivery, bool)
	// replayed may replace a delivery recovered from history, as admit
	// does a live one.
	replayed(d *hub.Delivery) *hub.Delivery
	// attached runs once the session is subscribed; detached once, when it
	// ends. They hold and release what the protocol keeps beyond the
	// session's channels.
	attached(ctx context.Context, sess *session)
	detached(sess *session)
	// receive carries out a data message (op is ws.OpText or ws.OpBinary)
	// that the client sent over a WebSocket, and returns the answer to
	// send in the protocol's format (nil for none). A *protoError closes
	// the connection with its code; another error with 1011.
	receive(sess *session, op ws.OpCode, data []byte) ([]byte, error)
	// keepalive is how the protocol's WebSockets are pinged.
	keepalive() keepalive
}

// keepalive is how a protocol's WebSockets are kept alive and found dead.
type keepalive struct {
	// text, when set, is a ping sent as a text message every
	// Options.RPCPingInterval, which a peer that has sent nothing for
	// missed pings in a row does not survive. Without it, a control-frame
	// ping goes every Options.PingInterval to a peer that must have sent
	// something since the last.
	text   []byte
	missed int32
}

// controlPings is the keepalive of protocols whose clients rely on
// WebSocket control frames.
var controlPings = keepalive{}

// plain is what the protocols before version 5 share: they keep no state
// beyond the session's, send every delivery as it comes, and ping with
// control frames.
type plain struct{}

func (plain) admit(d *hub.Delivery) (*hub.Delivery, bool)         { return d, true }
func (plain) replayed(d *hub.Delivery) *hub.Delivery              { return d }
func (plain) attached(context.Context, *session)                  {}
func (plain) detached(*session)                                   {}
func (plain) keepalive() keepalive                                { return controlPings }
func (plain) receive(*session, ws.OpCode, []byte) ([]byte, error) { return nil, nil }
