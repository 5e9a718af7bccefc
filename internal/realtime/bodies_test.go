package realtime

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/wire"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// subscribers is one connection of every format on one private channel
// (with a public id, so that clients can publish to it).
type subscribers struct {
	priv, pub channel.ID
	text      *wsClient
	json      *rawClient // format=json
	bin       *binClient
	rpc       *rpcClient
}

func (ts *testServer) allFormats(t *testing.T) *subscribers {
	t.Helper()
	s := &subscribers{priv: newChannel(t), pub: newChannel(t)}
	signed := url.QueryEscape(ts.signer.SignPrivate(s.priv, s.pub))
	s.text = ts.dial(t, "CHANNEL_ID="+signed)
	s.json = ts.dialRawClient(t, "CHANNEL_ID="+signed+"&format=json")
	s.bin = ts.dialBinary(t, ts.signer.SignPrivate(s.priv, s.pub), "")
	s.rpc = ts.dialRPC(t, "CHANNEL_ID="+signed+"&jsonRpc=true")
	ts.waitSubscribers(t, s.priv, 4)
	return s
}

// expect reads the next message of every subscriber and checks that the
// protobuf one has body as it was published and the JSON ones (text
// frames, format=json, JSON-RPC) have text: valid UTF-8 JSON.
func (s *subscribers) expect(t *testing.T, body, text string) {
	t.Helper()
	if m := s.bin.next(t); m.GetBody() != body {
		t.Fatalf("protobuf body %q, want %q", m.GetBody(), body)
	}
	if f := s.text.next(t); string(f.Text) != text {
		t.Fatalf("text frame text %s, want %s", f.Text, text)
	}
	raw := s.json.nextRaw(t)
	var arr []wire.TextFrame
	if !utf8.Valid(raw) || json.Unmarshal(raw, &arr) != nil || len(arr) != 1 || string(arr[0].Text) != text {
		t.Fatalf("format=json message %q, want one frame with text %s", raw, text)
	}
	if m := s.rpc.next(t); string(m.Body) != text {
		t.Fatalf("JSON-RPC body %s, want %s", m.Body, text)
	}
}

// rawClient hands over each data message as it arrives.
type rawClient struct {
	msgs   chan []byte
	closed chan wsutil.ClosedError
	failed chan error
}

func (ts *testServer) dialRawClient(t *testing.T, query string) *rawClient {
	t.Helper()
	conn, r, err := dialRaw(t.Context(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+query)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{msgs: make(chan []byte, 100), closed: make(chan wsutil.ClosedError, 1), failed: make(chan error, 1)}
	readerCleanup(t, conn, func(quit <-chan struct{}) {
		readServer(conn, r, quit, c.closed, c.failed, func(data []byte, op ws.OpCode) bool {
			if op == ws.OpText && !utf8.Valid(data) {
				data = append([]byte("NOT UTF-8: "), data...)
			}
			return put(c.msgs, data, quit)
		}, func() { close(c.msgs) })
	})
	return c
}

func (c *rawClient) nextRaw(t *testing.T) []byte {
	t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			t.Fatal("connection closed while waiting for a message")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
	}
	return nil
}

// Bodies that are not JSON are accepted on every path that Push server 2.x
// accepts them on: protobuf subscribers get them as they are, the others a
// JSON string of them, which breaks no frame.
func TestNonJSONBodiesReachEveryFormat(t *testing.T) {
	ts := newTestServer(t, nil)
	s := ts.allFormats(t)
	bodies := map[string]string{
		"message":                      `"message"`,
		"a\nb\r\u2028#!NGINXNME!#{":    `"a\nb\r\u2028#!NGINXNME!#{"`,
		`{"unterminated":`:             `"{\"unterminated\":"`,
		"caf\u00e9 <b>&</b>":           `"caf\u00e9 \u003cb\u003e\u0026\u003c/b\u003e"`,
		"#!NGINXNMS!#{}#!NGINXNME!#!x": `"#!NGINXNMS!#{}#!NGINXNME!#!x"`,
	}
	for body, want := range bodies {
		// The text and format=json frames escape "!" of an end marker;
		// decoded, it is the same string.
		var wantStr string
		if err := json.Unmarshal([]byte(want), &wantStr); err != nil || wantStr != body {
			t.Fatalf("bad test case %q: %v", want, err)
		}
		// Backend text publish.
		if code, text := ts.publishRaw(t, body, nil, s.priv); code != http.StatusOK {
			t.Fatalf("text publish of %q: %d %q", body, code, text)
		}
		s.expectString(t, body)
		// Backend protobuf publish.
		if code, resp := ts.postBatch(t, "/pub/?binaryMode=true", &pb.RequestBatch{Requests: []*pb.Request{incoming(body, 60, private(s.priv))}}); code != http.StatusOK {
			t.Fatalf("binary publish of %q: %d %q", body, code, resp)
		}
		s.expectString(t, body)
		// Client publish over HTTP, to the subscribers' public id.
		pubPriv, pubPub := newChannel(t), newChannel(t)
		if code, resp := ts.postBatch(t, "/pubweb/?CHANNEL_ID="+url.QueryEscape(ts.signer.SignPrivate(pubPriv, pubPub)),
			&pb.RequestBatch{Requests: []*pb.Request{incoming(body, 60, ts.public(s.pub))}}); code != http.StatusOK {
			t.Fatalf("client publish of %q: %d %q", body, code, resp)
		}
		s.expectString(t, body)
	}
	// A JSON body is still spliced as it is.
	ts.publish(t, `{"a":[1,2]}`, s.priv)
	s.expect(t, `{"a":[1,2]}`, `{"a":[1,2]}`)
}

// expectString is expect for a body that the JSON formats carry as a
// string: their text must decode to body.
func (s *subscribers) expectString(t *testing.T, body string) {
	t.Helper()
	if m := s.bin.next(t); m.GetBody() != body {
		t.Fatalf("protobuf body %q, want %q", m.GetBody(), body)
	}
	check := func(where string, text []byte) {
		t.Helper()
		var got string
		if !utf8.Valid(text) || json.Unmarshal(text, &got) != nil || got != body {
			t.Fatalf("%s: text %s does not decode to %q", where, text, body)
		}
	}
	check("text frame", s.text.next(t).Text)
	raw := s.json.nextRaw(t)
	var arr []wire.TextFrame
	if json.Unmarshal(raw, &arr) != nil || len(arr) != 1 {
		t.Fatalf("format=json message %q", raw)
	}
	check("format=json", arr[0].Text)
	check("JSON-RPC", s.rpc.next(t).Body)
}

// No path lets bytes that are not UTF-8 reach a subscriber: browsers drop
// a WebSocket whose text message is not UTF-8, and the client would get
// the same message again on every reconnect. Each is refused with its
// path's error; then a sentinel is the next message everyone gets.
func TestInvalidUTF8IsRefusedOnEveryPath(t *testing.T) {
	ts := newTestServer(t, nil)
	s := ts.allFormats(t)
	const bad = "{\"x\":\"caf\xe9\"}"

	// Version 5: a publish whose JSON holds such bytes is not JSON text.
	// (A server may also close the socket with 1007 for the text frame.)
	rpcPub := ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	if err := rpcPub.write(`{"jsonrpc":"2.0","method":"publish","params":{"channelList":["` + ts.signer.SignPublic(s.pub) + `"],"body":` + bad + `},"id":7}`); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-rpcPub.resps:
		if len(r) != 1 || r[0].Error == nil || r[0].Error.Code != -32700 {
			t.Fatalf("v5 publish: answer %+v", r)
		}
	case ce := <-rpcPub.closed:
		if ce.Code != 1007 {
			t.Fatalf("v5 publish: closed with %d %q", ce.Code, ce.Reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("v5 publish: no answer within 10 s")
	}
	// The backend's JSON-RPC.
	code, body, _ := ts.postAPI(t, `{"jsonrpc":"2.0","method":"publish","params":{"channelList":["`+s.priv.String()+`"],"body":`+bad+`}}`, nil)
	if code != 200 || !strings.Contains(body, `"code":-32700`) {
		t.Fatalf("/api/: %d %s", code, body)
	}
	code, body, _ = ts.postAPI(t, `{"jsonrpc":"2.0","method":"publish","params":{"channelList":["`+s.priv.String()+`"],"body":{},"dictionary":`+bad+`}}`, nil)
	if code != 200 || !strings.Contains(body, `"code":-32700`) {
		t.Fatalf("/api/ dictionary: %d %s", code, body)
	}

	if code, text := ts.publishRaw(t, bad, nil, s.priv); code != 400 || text != "4013: Wrong Request Data." {
		t.Fatalf("text /pub/: %d %q", code, text)
	}
	// Protobuf strings must be UTF-8: the batches do not decode.
	good := func(to *pb.Receiver) []byte {
		data, err := proto.Marshal(&pb.RequestBatch{Requests: []*pb.Request{incoming(`{"x":"cafAB"}`, 60, to)}})
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Replace(data, []byte("AB"), []byte{0xe9, 0xe9}, 1)
	}
	for _, path := range []string{"/pub/?binaryMode=true", "/pubweb/?CHANNEL_ID=" + url.QueryEscape(ts.signer.SignPrivate(newChannel(t), newChannel(t)))} {
		to := private(s.priv)
		if strings.HasPrefix(path, "/pubweb/") {
			to = ts.public(s.pub)
		}
		if code, body := ts.postRaw(t, path, good(to)); code != 400 || string(body) != "4013: Wrong Request Data." {
			t.Fatalf("%s: %d %q", path, code, body)
		}
	}
	pubPriv, pubPub := newChannel(t), newChannel(t)
	binPub := ts.dialBinary(t, ts.signer.SignPrivate(pubPriv, pubPub), "")
	if err := wsutil.WriteClientBinary(binPub.conn, good(ts.public(s.pub))); err != nil {
		t.Fatal(err)
	}
	if ce := binPub.waitClosed(t); ce.Code != 4013 || ce.Reason != "4013: Wrong Request Data." {
		t.Fatalf("WebSocket RequestBatch: closed with %d %q", ce.Code, ce.Reason)
	}

	ts.publish(t, `{"sentinel":1}`, s.priv)
	s.expect(t, `{"sentinel":1}`, `{"sentinel":1}`)
	if n := ts.broker.Stats().Messages; n != 1 {
		t.Fatalf("%d messages stored, want the sentinel alone", n)
	}
}
