package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/wire"
)

// The non-JSON text frames of version 5 (docs/protocol-v5.md, "Decisions").
var (
	framePing  = []byte("ping")
	framePong  = []byte("pong")
	prefixMack = []byte("mack:")
)

// rpcKeepalive: the clients take a connection without a text ping for 20 s
// for stuck, and reconnect.
var rpcKeepalive = keepalive{text: framePing, misses: maxMissed}

// maxMissed is how many pings may go without any frame back before the
// peer is taken for dead (docs/protocol-v5.md, "Decisions").
const maxMissed = 3

// keepalive: text pings.
func (rc *rpcConn) keepalive() keepalive { return rpcKeepalive }

// receive answers a text message: pong, mack or JSON-RPC. Bad input is
// answered with a JSON-RPC error and never closes the connection.
func (rc *rpcConn) receive(sess *session, op ws.OpCode, data []byte) ([]byte, error) {
	if op != ws.OpText {
		return nil, nil
	}
	return sess.srv.answerRPCFrame(sess, data), nil
}

// rpcCallTime bounds one client call: the clients give up after 5 s.
const rpcCallTime = 5 * time.Second

// answerRPCFrame carries out one text message of a version 5 client and
// returns what to send back: pong for ping, the JSON-RPC answer, or nil.
func (s *Server) answerRPCFrame(sess *session, data []byte) []byte {
	switch {
	case bytes.Equal(data, framePong):
		return nil
	case bytes.HasPrefix(data, prefixMack):
		// Acknowledgements are not needed for correctness: recovery is by
		// mid on reconnect.
		s.log.Debug("message acknowledged", "mid", string(data[len(prefixMack):]))
		return nil
	case bytes.Equal(data, framePing):
		return framePong
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcCallTime)
	defer cancel()
	return s.serveRPC(ctx, data, rpcFace{
		run: func(ctx context.Context, call wire.RPCCall) (any, *wire.RPCError) {
			return s.clientMethod(ctx, sess, call)
		},
		// As many as a version 4 client may put in one RequestBatch.
		maxCalls: maxMessagesPerRequest,
	})
}

// rpcMethod carries out one call and returns its result (marshalled as
// JSON) or error.
type rpcMethod func(ctx context.Context, call wire.RPCCall) (any, *wire.RPCError)

// rpcFace is how the frames of one side, clients or backends, are served.
type rpcFace struct {
	run rpcMethod
	// answerAll answers notifications too, with id null, which the
	// backend's PHP client requires (docs/protocol-v5.md, "Backend
	// endpoint").
	answerAll bool
	// maxCalls bounds a batch; 0 leaves it to the payload limit.
	maxCalls int
}

// serveRPC decodes a frame, runs each call and returns the answer: one
// response, an array for a batch, or nil when nothing is to be answered.
func (s *Server) serveRPC(ctx context.Context, data []byte, face rpcFace) []byte {
	calls, batch, ferr := wire.DecodeRPC(data)
	if ferr == nil && face.maxCalls > 0 && len(calls) > face.maxCalls {
		ferr = wire.NewRPCError(wire.RPCInvalidRequest, fmt.Sprintf("a batch holds at most %d calls", face.maxCalls))
	}
	if ferr != nil {
		return wire.AppendRPCError(nil, nil, ferr)
	}
	var out []byte
	n := 0
	for _, call := range calls {
		if call.Response {
			continue // a client answering our notification
		}
		var item []byte
		if call.Err != nil {
			item = wire.AppendRPCError(nil, call.ID, call.Err)
		} else {
			result, rerr := face.run(ctx, call)
			if !face.answerAll && call.IsNotification() {
				continue
			}
			item = s.rpcAnswer(call.ID, result, rerr)
		}
		if n == 0 && batch {
			out = append(out, '[')
		} else if n > 0 {
			out = append(out, ',')
		}
		out = append(out, item...)
		n++
	}
	if n == 0 {
		return nil
	}
	if batch {
		out = append(out, ']')
	}
	return out
}

func (s *Server) rpcAnswer(id json.RawMessage, result any, rerr *wire.RPCError) []byte {
	if rerr != nil {
		return wire.AppendRPCError(nil, id, rerr)
	}
	b, err := json.Marshal(result)
	if err != nil {
		s.log.Error("encode JSON-RPC result", "err", err)
		return wire.AppendRPCError(nil, id, wire.NewRPCError(wire.RPCInternalError, ""))
	}
	return wire.AppendRPCResult(nil, id, b)
}

// ackOverHTTP answers the mack:<mid> that a version 5 client on long
// polling posts to server.publish, where its connector sends every frame.
// It reports whether body was one.
func (s *Server) ackOverHTTP(w http.ResponseWriter, body []byte) bool {
	const maxAck = 64 // "mack:" and a 26-digit id, with room
	if len(body) > maxAck || !bytes.HasPrefix(body, prefixMack) {
		return false
	}
	s.log.Debug("message acknowledged", "mid", string(body[len(prefixMack):]))
	writeText(w, http.StatusOK, "")
	return true
}
