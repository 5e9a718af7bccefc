package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// JSON-RPC 2.0 error codes (docs/protocol-v5.md, "Client methods"), which the
// clients know by number.
const (
	RPCParseError     = -32700
	RPCInvalidRequest = -32600
	RPCMethodNotFound = -32601
	RPCInvalidParams  = -32602
	RPCInternalError  = -32603
)

// jsonSpace is JSON's insignificant whitespace (RFC 8259 §2).
const jsonSpace = " \t\r\n"

// RPCError is a JSON-RPC error object.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string { return strconv.Itoa(e.Code) + ": " + e.Message }

// NewRPCError returns an error with code and its standard message, or msg
// when given.
func NewRPCError(code int, msg string) *RPCError {
	if msg == "" {
		switch code {
		case RPCParseError:
			msg = "Parse error"
		case RPCInvalidRequest:
			msg = "Invalid Request"
		case RPCMethodNotFound:
			msg = "Method not found"
		case RPCInvalidParams:
			msg = "Invalid params"
		default:
			msg = "Internal error"
		}
	}
	return &RPCError{Code: code, Message: msg}
}

// RPCCall is one element of a JSON-RPC frame.
type RPCCall struct {
	Method string
	// Params is the params member as sent (an object or array), nil when
	// absent.
	Params json.RawMessage
	// ID is the id member as sent, so that it is echoed with its JSON type
	// (the core client matches ids with ===); nil for a notification.
	ID json.RawMessage
	// Response marks a JSON-RPC response sent to us (the core client
	// answers our notifications); it is ignored.
	Response bool
	// Err is set when the element is not a valid request; it is answered
	// with this error and ID (or null).
	Err *RPCError
}

// IsNotification reports whether the call expects no response.
func (c RPCCall) IsNotification() bool { return c.ID == nil }

// DecodeRPC reads a JSON-RPC frame: one request or a batch (array). A frame
// that is not JSON is a parse error and an empty batch an invalid request,
// both answered with one error; anything wrong with one element is that
// element's Err.
func DecodeRPC(data []byte) (calls []RPCCall, batch bool, err *RPCError) {
	data = bytes.Trim(data, jsonSpace) // not TrimSpace: "\v0" is not JSON
	// JSON text is UTF-8 (RFC 8259 §8.1); encoding/json would take invalid
	// bytes inside strings, and they would reach subscribers' WebSocket
	// text messages, which browsers drop the connection for.
	if !utf8.Valid(data) || !json.Valid(data) {
		return nil, false, NewRPCError(RPCParseError, "")
	}
	if len(data) > 0 && data[0] == '[' {
		var elems []json.RawMessage
		if json.Unmarshal(data, &elems) != nil || len(elems) == 0 {
			return nil, true, NewRPCError(RPCInvalidRequest, "")
		}
		calls = make([]RPCCall, len(elems))
		for i, e := range elems {
			calls[i] = decodeCall(e)
		}
		return calls, true, nil
	}
	return []RPCCall{decodeCall(data)}, false, nil
}

// decodeCall reads one valid JSON value as a request.
func decodeCall(data json.RawMessage) RPCCall {
	// A map, not a struct: member names are matched exactly, as the
	// clients' JavaScript reads them, where encoding/json would take "ID"
	// for "id". The last of repeated members wins, as in JSON.parse.
	var obj map[string]json.RawMessage
	invalid := RPCCall{Err: NewRPCError(RPCInvalidRequest, "")}
	if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, &obj) != nil {
		return invalid
	}
	f := struct{ JSONRPC, Method, Params, ID, Result, Error json.RawMessage }{
		obj["jsonrpc"], obj["method"], obj["params"], obj["id"], obj["result"], obj["error"],
	}
	var call RPCCall
	if f.ID != nil {
		switch f.ID[0] {
		case '"', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			call.ID = f.ID
		default: // an object, array or boolean cannot be echoed as an id
			return invalid
		}
		invalid.ID = call.ID
	}
	if string(f.JSONRPC) != `"2.0"` {
		return invalid
	}
	if f.Method == nil && (f.Result != nil || f.Error != nil) {
		call.Response = true
		return call
	}
	if json.Unmarshal(f.Method, &call.Method) != nil || call.Method == "" {
		return invalid
	}
	if f.Params != nil && string(f.Params) != "null" {
		if f.Params[0] != '{' && f.Params[0] != '[' {
			return invalid
		}
		call.Params = f.Params
	}
	return call
}

// AppendRPCResult appends {"jsonrpc":"2.0","id":<id>,"result":<result>};
// a nil id is written as null. result must be JSON.
func AppendRPCResult(dst []byte, id, result json.RawMessage) []byte {
	dst = appendRPCHead(dst, id)
	dst = append(dst, `,"result":`...)
	dst = append(dst, result...)
	return append(dst, '}')
}

// AppendRPCError appends {"jsonrpc":"2.0","id":<id>,"error":{…}}.
func AppendRPCError(dst []byte, id json.RawMessage, e *RPCError) []byte {
	dst = appendRPCHead(dst, id)
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, `,"message":`...)
	msg, _ := json.Marshal(e.Message) // a string always marshals
	dst = append(dst, msg...)
	return append(dst, "}}"...)
}

func appendRPCHead(dst []byte, id json.RawMessage) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	if id == nil {
		return append(dst, "null"...)
	}
	return append(dst, id...)
}

// AppendIncomingMessage appends the version 5 delivery of m through ch, a
// notification the clients handle as (docs/protocol-v5.md, "Messages"):
//
//	{"jsonrpc":"2.0","method":"incoming.message","params":{"mid":"…","body":{…},"sender":{…},"user_params":{…},"dictionary":{…}}}
//
// user_params are the ones m carries for ch (a user's channel), so a
// message addressed to many users still encodes once per user; they and
// dictionary are left out when absent. The publisher checked that they
// are JSON objects. A body that is not JSON (a text /pub/ publish may be
// anything) is sent as a JSON string.
func AppendIncomingMessage(dst []byte, m *message.Message, ch channel.ID) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","method":"incoming.message","params":{"mid":"`...)
	dst = m.ID.AppendText(dst)
	dst = append(dst, `","body":`...)
	if json.Valid(m.Body) {
		dst = appendValidUTF8(dst, bytes.TrimSpace(m.Body))
	} else {
		dst = appendJSONString(dst, m.Body)
	}
	dst = append(dst, `,"sender":`...)
	dst = appendRPCSender(dst, m.Sender)
	if p := m.UserParams[ch]; p != nil {
		dst = append(dst, `,"user_params":`...)
		dst = appendValidUTF8(dst, p)
	}
	if m.Dictionary != nil {
		dst = append(dst, `,"dictionary":`...)
		dst = appendValidUTF8(dst, m.Dictionary)
	}
	return append(dst, "}}"...)
}

// appendRPCSender writes {"type":2} for a backend and {"type":1,"id":"…"}
// for a client: its user id (v5) or else its public channel id (v4).
func appendRPCSender(dst []byte, s message.Sender) []byte {
	dst = append(dst, `{"type":`...)
	dst = strconv.AppendInt(dst, int64(s.Type), 10)
	if s.Type == message.SenderClient {
		switch {
		case s.UserID > 0:
			dst = append(dst, `,"id":"`...)
			dst = strconv.AppendInt(dst, s.UserID, 10)
			dst = append(dst, '"')
		case !s.ID.IsZero():
			dst = append(dst, `,"id":"`...)
			dst = s.ID.AppendHex(dst)
			dst = append(dst, '"')
		}
	}
	return append(dst, '}')
}

// IncomingMessage is the params of an incoming.message notification, as a
// client reads it.
type IncomingMessage struct {
	MID        string          `json:"mid"`
	Body       json.RawMessage `json:"body"`
	Sender     json.RawMessage `json:"sender,omitempty"`
	UserParams json.RawMessage `json:"user_params,omitempty"`
	Dictionary json.RawMessage `json:"dictionary,omitempty"`
}

// ParseIncomingMessages reads the incoming.message notifications of one
// version 5 frame or long-poll answer (one request or a batch), as a
// client does: elements that are not incoming.message are skipped.
func ParseIncomingMessages(data []byte) ([]IncomingMessage, error) {
	calls, _, ferr := DecodeRPC(data)
	if ferr != nil {
		return nil, ferr
	}
	var out []IncomingMessage
	for _, c := range calls {
		if c.Err != nil || c.Response || c.Method != "incoming.message" {
			continue
		}
		var m IncomingMessage
		if c.Params == nil || json.Unmarshal(c.Params, &m) != nil || m.MID == "" {
			return out, fmt.Errorf("incoming.message without a mid: %.100s", c.Params)
		}
		out = append(out, m)
	}
	return out, nil
}
