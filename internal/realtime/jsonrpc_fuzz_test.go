package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/token"
)

// FuzzV5ClientFrame feeds what a version 5 client may send in a WebSocket
// text message to the server's handling of it, as user 1 of a token
// session, and checks the answer: valid UTF-8 JSON, every request id
// echoed in order, no Go type names in error messages, and no panic.
// Which ids must come back is worked out here from the bytes alone, as
// JSON-RPC 2.0 says, not with the server's decoder.
func FuzzV5ClientFrame(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","method":"ping","params":{},"id":1}`,
		`{"jsonrpc":"2.0","method":"publish","params":{"userList":[2],"body":{"module_id":"m","command":"c","params":{}},"expiry":0},"id":"a"}`,
		`[{"jsonrpc":"2.0","method":"getUsersLastSeen","params":{"userList":[1,"2"]},"id":2},{"jsonrpc":"2.0","method":"listChannels","id":3}]`,
		`{"jsonrpc":"2.0","method":"subscribeStatusChange","params":{"userId":5},"id":-1.5e3}`,
		`{"jsonrpc":"2.0","method":"publish","params":{"userList":[2],"body":{},"expiry":-1},"id":4}`,
		`{"jsonrpc":"2.0","id":9,"result":{}}`,
		`{"jsonrpc":"2.0","method":"publish","params":{"channelList":["x.y"],"body":{}}}`,
		`{"jsonrpc":"2.0","method":"ping","ID":1}`,
		"{\"jsonrpc\":\"2.0\",\"method\":\"publish\",\"params\":{\"userList\":[2],\"body\":{\"a\":\"\xff\"}},\"id\":5}",
		`[]`, `[1]`, `ping`, `pong`, `mack:1`, ``,
	} {
		f.Add([]byte(seed))
	}
	srv, sess := fuzzRPCSession(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		answer := srv.answerRPCFrame(sess, data)
		switch {
		case bytes.Equal(data, framePing):
			if string(answer) != "pong" {
				t.Fatalf("ping answered %q", answer)
			}
			return
		case bytes.Equal(data, framePong) || bytes.HasPrefix(data, prefixMack):
			if answer != nil {
				t.Fatalf("%q answered %q", data, answer)
			}
			return
		}
		if answer != nil && (!utf8.Valid(answer) || !json.Valid(answer)) {
			t.Fatalf("%q: answer %q is not UTF-8 JSON", data, answer)
		}
		want := expectedIDs(data)
		got, msgs := answeredIDs(t, answer)
		if len(got) != len(want) {
			t.Fatalf("%q: answer %s echoes ids %q, want %q", data, answer, got, want)
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%q: answer %s echoes ids %q, want %q", data, answer, got, want)
			}
		}
		for _, m := range msgs {
			if goWords.MatchString(m) {
				t.Fatalf("%q: error message %q names Go", data, m)
			}
		}
	})
}

func fuzzRPCSession(f testing.TB) (*Server, *session) {
	opt := testOptions()
	h := hub.New()
	b, err := memory.New(memory.Options{HistoryPerChannel: 10}, h)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = b.Close(context.Background()) })
	key := []byte("SECURITYKEY123456")
	srv := New(opt, b, h, channel.NewSigner(key, channel.SHA1), slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	tok := token.Sign(token.Claims{Issuer: testTenant, IssuedAt: now, Expires: now.Add(time.Hour), User: 1}, key)
	sess, err := srv.openSession(context.Background(), url.Values{"token": {tok}, "jsonRpc": {"true"}})
	if err != nil {
		f.Fatal(err)
	}
	// A transport that only takes note, as deliveries to its watches may
	// wake it.
	sess.t = newLongPollConn()
	return srv, sess
}

// expectedIDs lists, in order, the non-null ids the answer to a frame must
// echo: those of the request objects that have a string or number id and
// are not themselves responses. A frame that is not UTF-8 JSON, an empty
// batch and a batch over the limit are answered with one error, id null.
func expectedIDs(data []byte) [][]byte {
	if !utf8.Valid(data) || !json.Valid(data) {
		return nil
	}
	data = bytes.Trim(data, " \t\r\n")
	elems := []json.RawMessage{data}
	if data[0] == '[' {
		if json.Unmarshal(data, &elems) != nil || len(elems) > maxMessagesPerRequest {
			return nil
		}
	}
	var ids [][]byte
	for _, e := range elems {
		var obj map[string]json.RawMessage
		if json.Unmarshal(e, &obj) != nil || obj == nil {
			continue
		}
		id, ok := obj["id"]
		if !ok || (id[0] != '"' && id[0] != '-' && (id[0] < '0' || id[0] > '9')) {
			continue
		}
		_, hasMethod := obj["method"]
		_, hasResult := obj["result"]
		_, hasError := obj["error"]
		if string(obj["jsonrpc"]) == `"2.0"` && !hasMethod && (hasResult || hasError) {
			continue // a response to us: not answered
		}
		ids = append(ids, id)
	}
	return ids
}

// answeredIDs reads the non-null ids of an answer (one response or an
// array of them) and the messages of its errors.
func answeredIDs(t *testing.T, answer []byte) (ids [][]byte, msgs []string) {
	if answer == nil {
		return nil, nil
	}
	var elems []json.RawMessage
	if answer[0] == '[' {
		if err := json.Unmarshal(answer, &elems); err != nil || len(elems) == 0 {
			t.Fatalf("answer %s: not a non-empty array", answer)
		}
	} else {
		elems = []json.RawMessage{answer}
	}
	for _, e := range elems {
		var r rpcResponse
		if err := json.Unmarshal(e, &r); err != nil || r.JSONRPC != "2.0" || r.ID == nil || (r.Result == nil) == (r.Error == nil) {
			t.Fatalf("answer element %s is not a JSON-RPC response", e)
		}
		if r.Error != nil {
			msgs = append(msgs, r.Error.Message)
		}
		if string(r.ID) != "null" {
			ids = append(ids, r.ID)
		}
	}
	return ids, msgs
}
