package pullclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gobwas/ws/wsutil"
)

// Errors of Client.Call.
var (
	// ErrNotRPC: the client does not speak version 5, which alone has
	// client methods.
	ErrNotRPC = errors.New("pullclient: calls need protocol version 5 over a WebSocket")
	// ErrNotConnected: no WebSocket is up at the moment (the client is
	// between connections).
	ErrNotConnected = errors.New("pullclient: not connected")
)

// CallError is a JSON-RPC error answered by the server.
type CallError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *CallError) Error() string {
	return fmt.Sprintf("pullclient: server answered %d: %s", e.Code, e.Message)
}

// callResult is the server's answer to one call.
type callResult struct {
	result json.RawMessage
	err    error
}

// Call invokes a version 5 client method on the server over the current
// WebSocket and returns its result: "publish", "getUsersLastSeen", "ping",
// "listChannels", "subscribeStatusChange" (after which UserStatus events
// arrive for that user; the watch lasts as long as the connection, so
// repeat it after each Connected) and "unsubscribeStatusChange"
// (docs/protocol-v5.md). params is encoded with encoding/json.
//
// The answer is read by the goroutine that delivers events: a caller that
// also reads Events should not stop reading while it waits, or the client
// may fill its event buffer and never read the answer before ctx ends.
func (c *Client) Call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	return c.r.call(ctx, method, params)
}

func (r *runner) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	if r.cfg.Version < 5 || r.cfg.Transport == LongPoll {
		return nil, ErrNotRPC
	}
	p, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("pullclient: params of %s: %w", method, err)
	}
	id := r.nextID.Add(1)
	req, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		Method  string          `json:"method"`
		Params  json.RawMessage `json:"params"`
		ID      int64           `json:"id"`
	}{"2.0", method, p, id})
	if err != nil {
		return nil, err
	}
	answer := make(chan callResult, 1)
	r.callMu.Lock()
	conn := r.rpcConn
	if conn == nil {
		r.callMu.Unlock()
		return nil, ErrNotConnected
	}
	r.pending[id] = answer
	r.callMu.Unlock()
	defer func() {
		r.callMu.Lock()
		delete(r.pending, id)
		r.callMu.Unlock()
	}()
	if err := r.write(conn, req); err != nil {
		return nil, fmt.Errorf("pullclient: %s: %w", method, err)
	}
	select {
	case a := <-answer:
		return a.result, a.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// write sends one text message; writes from the reader (pongs, close) and
// from callers are serialised.
func (r *runner) write(conn net.Conn, data []byte) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(dialTimeout))
	err := wsutil.WriteClientText(conn, data)
	_ = conn.SetWriteDeadline(time.Time{})
	return err
}

// setRPCConn makes conn the one calls go out on (nil: none), failing the
// calls still waiting on the previous one.
func (r *runner) setRPCConn(conn net.Conn) {
	r.callMu.Lock()
	defer r.callMu.Unlock()
	r.rpcConn = conn
	if conn == nil {
		for id, answer := range r.pending {
			answer <- callResult{err: errors.New("pullclient: connection lost before the answer")}
			delete(r.pending, id)
		}
	}
}

// answerCalls hands the JSON-RPC responses in a version 5 frame to the
// calls waiting for them; everything else is left to deliver.
func (r *runner) answerCalls(data []byte) {
	if len(data) == 0 || (data[0] != '{' && data[0] != '[') {
		return
	}
	type response struct {
		Method string           `json:"method"`
		ID     *json.RawMessage `json:"id"`
		Result json.RawMessage  `json:"result"`
		Error  *CallError       `json:"error"`
	}
	var list []response
	if data[0] == '[' {
		if json.Unmarshal(data, &list) != nil {
			return
		}
	} else {
		var one response
		if json.Unmarshal(data, &one) != nil {
			return
		}
		list = []response{one}
	}
	r.callMu.Lock()
	defer r.callMu.Unlock()
	for _, resp := range list {
		if resp.Method != "" || resp.ID == nil {
			continue
		}
		id, err := strconv.ParseInt(string(*resp.ID), 10, 64)
		if err != nil {
			continue
		}
		answer, ok := r.pending[id]
		if !ok {
			continue
		}
		delete(r.pending, id)
		if resp.Error != nil {
			answer <- callResult{err: resp.Error}
		} else {
			answer <- callResult{result: resp.Result}
		}
	}
}
