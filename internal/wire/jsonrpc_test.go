package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

func TestDecodeRPC(t *testing.T) {
	type want struct {
		method string
		id     string // "" for none
		code   int    // element error
		resp   bool
	}
	cases := []struct {
		name  string
		in    string
		batch bool
		code  int // frame error
		calls []want
	}{
		{name: "request", in: `{"jsonrpc":"2.0","method":"ping","params":{},"id":1}`, calls: []want{{method: "ping", id: "1"}}},
		{name: "string id kept as string", in: `{"jsonrpc":"2.0","method":"ping","id":"7"}`, calls: []want{{method: "ping", id: `"7"`}}},
		{name: "null id", in: `{"jsonrpc":"2.0","method":"ping","id":null}`, calls: []want{{method: "ping", id: "null"}}},
		{name: "notification", in: ` {"jsonrpc":"2.0","method":"publish","params":[1]} `, calls: []want{{method: "publish"}}},
		{name: "batch", in: `[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"b","id":2}]`, batch: true,
			calls: []want{{method: "a", id: "1"}, {method: "b", id: "2"}}},
		{name: "response ignored", in: `{"jsonrpc":"2.0","id":3,"result":{}}`, calls: []want{{resp: true, id: "3"}}},
		{name: "not JSON", in: `{"jsonrpc":`, code: RPCParseError},
		{name: "empty", in: ``, code: RPCParseError},
		{name: "empty batch", in: `[]`, batch: true, code: RPCInvalidRequest},
		{name: "scalar", in: `1`, calls: []want{{code: RPCInvalidRequest}}},
		{name: "wrong version", in: `{"jsonrpc":"1.0","method":"ping","id":4}`, calls: []want{{code: RPCInvalidRequest, id: "4"}}},
		{name: "no version", in: `{"method":"ping","id":4}`, calls: []want{{code: RPCInvalidRequest, id: "4"}}},
		{name: "method not string", in: `{"jsonrpc":"2.0","method":1,"id":4}`, calls: []want{{code: RPCInvalidRequest, id: "4"}}},
		{name: "empty method", in: `{"jsonrpc":"2.0","method":"","id":4}`, calls: []want{{code: RPCInvalidRequest, id: "4"}}},
		{name: "params scalar", in: `{"jsonrpc":"2.0","method":"ping","params":"x","id":4}`, calls: []want{{code: RPCInvalidRequest, id: "4"}}},
		{name: "id object", in: `{"jsonrpc":"2.0","method":"ping","id":{}}`, calls: []want{{code: RPCInvalidRequest}}},
		{name: "batch with bad element", in: `[1,{"jsonrpc":"2.0","method":"a","id":"x"}]`, batch: true,
			calls: []want{{code: RPCInvalidRequest}, {method: "a", id: `"x"`}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls, batch, err := DecodeRPC([]byte(c.in))
			if c.code != 0 {
				if err == nil || err.Code != c.code {
					t.Fatalf("error = %v; want code %d", err, c.code)
				}
				return
			}
			if err != nil || batch != c.batch || len(calls) != len(c.calls) {
				t.Fatalf("DecodeRPC = %+v, batch %v, %v", calls, batch, err)
			}
			for i, w := range c.calls {
				got := calls[i]
				if got.Method != w.method || string(got.ID) != w.id || got.Response != w.resp ||
					(w.code == 0) != (got.Err == nil) || (got.Err != nil && got.Err.Code != w.code) {
					t.Fatalf("call %d = %+v (err %v); want %+v", i, got, got.Err, w)
				}
			}
		})
	}
}

func TestAppendRPC(t *testing.T) {
	got := string(AppendRPCResult(nil, json.RawMessage(`"a"`), json.RawMessage(`true`)))
	if got != `{"jsonrpc":"2.0","id":"a","result":true}` {
		t.Fatal(got)
	}
	got = string(AppendRPCError(nil, nil, NewRPCError(RPCMethodNotFound, "")))
	if got != `{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"Method not found"}}` {
		t.Fatal(got)
	}
}

func TestAppendIncomingMessage(t *testing.T) {
	u, other := channel.User("t", 1), channel.User("t", 2)
	m := &message.Message{
		ID: message.ID{Epoch: 1700000000, Seq: 5}, Body: []byte(` {"module_id":"im","command":"c","params":{"a":1}}`),
		Created: time.Unix(1700000000, 0), Sender: message.Sender{Type: message.SenderClient, UserID: 3},
		UserParams: map[channel.ID][]byte{u: []byte(`{"name":"Ann"}`)}, Dictionary: []byte(`{"k":"v"}`),
	}
	want := `{"jsonrpc":"2.0","method":"incoming.message","params":{"mid":"` + m.ID.String() +
		`","body":{"module_id":"im","command":"c","params":{"a":1}},"sender":{"type":1,"id":"3"},"user_params":{"name":"Ann"},"dictionary":{"k":"v"}}}`
	if got := string(AppendIncomingMessage(nil, m, u)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// Another user has no user_params; a backend sender has no id.
	m.Sender = message.Sender{Type: message.SenderBackend}
	m.Dictionary = nil
	want = `{"jsonrpc":"2.0","method":"incoming.message","params":{"mid":"` + m.ID.String() +
		`","body":{"module_id":"im","command":"c","params":{"a":1}},"sender":{"type":2}}}`
	if got := string(AppendIncomingMessage(nil, m, other)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// A body that is not JSON is sent as a string, so the frame stays JSON.
	m.Body = []byte("plain \xff text")
	if fr := AppendIncomingMessage(nil, m, other); !json.Valid(fr) {
		t.Fatalf("not JSON: %s", fr)
	}
}

// FuzzDecodeRPC: any frame decodes without panicking into calls whose
// answers are valid JSON echoing the id as sent.
func FuzzDecodeRPC(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","method":"ping","params":{},"id":1}`))
	f.Add([]byte(`[{"jsonrpc":"2.0","method":"publish","params":{"userList":[1]},"id":"x"},1,{"jsonrpc":"2.0","id":2,"result":{}}]`))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"a","id":-1.5e3}`))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"a","ID":1,"id":{}}`))
	f.Add([]byte(`{"jsonrpc":"1.0","id":"\u00e9"}`))
	f.Add([]byte("{\"jsonrpc\":\"2.0\",\"method\":\"a\",\"id\":\"\xff\"}"))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		calls, batch, ferr := DecodeRPC(data)
		want, wantBatch, ok := rpcOracle(data)
		if ferr != nil {
			if ok {
				t.Fatalf("%q: frame error %v, but it is a JSON-RPC frame", data, ferr)
			}
			if calls != nil {
				t.Fatal("calls with a frame error")
			}
			if !json.Valid(AppendRPCError(nil, nil, ferr)) {
				t.Fatal("frame error answer is not JSON")
			}
			return
		}
		if !ok || batch != wantBatch || len(calls) != len(want) {
			t.Fatalf("%q: %d calls (batch %v), the oracle says %d (batch %v, frame %v)", data, len(calls), batch, len(want), wantBatch, ok)
		}
		for i, c := range calls {
			// The id is echoed byte for byte, whatever else is wrong with
			// the call; one that cannot be an id is not echoed.
			if !bytes.Equal(c.ID, want[i].id) {
				t.Fatalf("%q: call %d has id %q, want %q", data, i, c.ID, want[i].id)
			}
			if c.Response != want[i].response {
				t.Fatalf("%q: call %d response %v, want %v", data, i, c.Response, want[i].response)
			}
			var answer []byte
			switch {
			case c.Err != nil:
				answer = AppendRPCError(nil, c.ID, c.Err)
			case c.Response:
				continue
			default:
				if c.Method == "" {
					t.Fatal("valid call without a method")
				}
				if c.Params != nil && c.Params[0] != '{' && c.Params[0] != '[' {
					t.Fatalf("params %q", c.Params)
				}
				answer = AppendRPCResult(nil, c.ID, json.RawMessage(`true`))
			}
			var r struct{ ID json.RawMessage }
			if !utf8.Valid(answer) || json.Unmarshal(answer, &r) != nil {
				t.Fatalf("answer %q is not UTF-8 JSON", answer)
			}
			wantID := want[i].id
			if wantID == nil {
				wantID = []byte("null")
			}
			if !bytes.Equal(r.ID, wantID) {
				t.Fatalf("%q: answer %s has id %s, want %s", data, answer, r.ID, wantID)
			}
		}
	})
}

// rpcCall is what rpcOracle expects of one element.
type rpcCall struct {
	id       []byte // nil: no id to echo
	response bool
}

// rpcOracle reads a frame as JSON-RPC 2.0 and the clients' JavaScript
// define it, without DecodeRPC: UTF-8 JSON text (RFC 8259), one request or
// a non-empty array of them; members matched by exact name, the last of
// repeated ones winning; an id is a string, a number or null; a response is
// an element with "jsonrpc":"2.0", no method, and a result or error.
func rpcOracle(data []byte) (calls []rpcCall, batch, ok bool) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if !utf8.Valid(data) || dec.Decode(&v) != nil || dec.InputOffset() != int64(len(bytes.TrimRight(data, " \t\r\n"))) {
		return nil, false, false
	}
	elems := []json.RawMessage{bytes.TrimSpace(data)}
	if arr, isArr := v.([]any); isArr {
		if len(arr) == 0 {
			return nil, false, false
		}
		batch = true
		elems = nil
		_ = json.Unmarshal(data, &elems)
	}
	for _, e := range elems {
		var obj map[string]json.RawMessage
		var c rpcCall
		if json.Unmarshal(e, &obj) == nil && obj != nil {
			if id, has := obj["id"]; has {
				var idv any
				if json.Unmarshal(id, &idv) != nil {
					idv = 0.0 // a number too large for float64
				}
				switch idv.(type) {
				case string, float64, nil:
					c.id = id
				}
			}
			_, method := obj["method"]
			_, result := obj["result"]
			_, rerr := obj["error"]
			c.response = string(obj["jsonrpc"]) == `"2.0"` && !method && (result || rerr)
		}
		calls = append(calls, c)
	}
	return calls, batch, true
}

func TestParseIncomingMessages(t *testing.T) {
	one := `{"jsonrpc":"2.0","method":"incoming.message","params":{"mid":"17000000000000000000000001","body":{"a":1},"sender":{"type":2},"user_params":{"u":1}}}`
	got, err := ParseIncomingMessages([]byte(one))
	if err != nil || len(got) != 1 || got[0].MID != "17000000000000000000000001" || string(got[0].Body) != `{"a":1}` || string(got[0].UserParams) != `{"u":1}` {
		t.Fatalf("one: %+v, %v", got, err)
	}
	batch := `[` + one + `,{"jsonrpc":"2.0","id":1,"result":"pong"},{"jsonrpc":"2.0","method":"other"},` + strings.Replace(one, "01\"", "02\"", 1) + `]`
	got, err = ParseIncomingMessages([]byte(batch))
	if err != nil || len(got) != 2 || got[1].MID != "17000000000000000000000002" {
		t.Fatalf("batch: %+v, %v", got, err)
	}
	for _, bad := range []string{`ping`, `{"jsonrpc":"2.0","method":"incoming.message","params":{"body":{}}}`} {
		if _, err := ParseIncomingMessages([]byte(bad)); err == nil {
			t.Fatalf("%s: no error", bad)
		}
	}
}

// Whatever a stored message holds, its JSON-RPC delivery is one UTF-8
// JSON value: a body that is not JSON goes as a string, and bytes that are
// not UTF-8 (which publishers refuse) become U+FFFD.
func TestIncomingMessageIsAlwaysUTF8JSON(t *testing.T) {
	ch := channel.ID{1}
	for _, m := range []*message.Message{
		{Body: []byte("message")},
		{Body: []byte("caf\xe9")},
		{Body: []byte("{\"a\":\"caf\xe9\"}")},
		{Body: []byte(`{}`), Dictionary: []byte("{\"d\":\"\xff\"}"), UserParams: map[channel.ID][]byte{ch: []byte("{\"u\":\"\xc3\"}")}},
	} {
		out := AppendIncomingMessage(nil, m, ch)
		if !utf8.Valid(out) || !json.Valid(out) {
			t.Fatalf("body %q: %q", m.Body, out)
		}
		got, err := ParseIncomingMessages(out)
		if err != nil || len(got) != 1 {
			t.Fatalf("body %q: %v", m.Body, err)
		}
		var s string
		if !json.Valid(m.Body) && (json.Unmarshal(got[0].Body, &s) != nil || s != strings.ToValidUTF8(string(m.Body), "\uFFFD")) {
			t.Fatalf("body %q arrives as %s", m.Body, got[0].Body)
		}
	}
}
