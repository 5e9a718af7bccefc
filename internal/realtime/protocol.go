package realtime

import (
	"context"
	"net/url"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/hub"
)

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

// requestedProtocol names the protocol a subscribe query asks for: the
// clients send the literal "true" for jsonRpc and binaryMode, as Push server
// 2.x reads them, so text, JSON, protobuf and JSON-RPC subscribers share
// channels.
func requestedProtocol(q url.Values) string {
	switch {
	case q.Get("jsonRpc") == "true":
		return "jsonrpc"
	case q.Get("binaryMode") == "true":
		return "protobuf"
	case q.Get("format") == "json":
		return "json"
	}
	return "text"
}
