package realtime

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

// The Bitrix PHP client posts batches of notifications (no ids) and needs
// HTTP 200 with JSON carrying "jsonrpc":"2.0" for every one of them.
func TestV5APIPublishBatchLikePHP(t *testing.T) {
	ts := newTestServer(t, nil)
	privFive, shared := newChannel(t), newChannel(t)
	five := ts.dialRPC(t, "token="+ts.tokenFor(5, shared)+"&jsonRpc=true")
	six := ts.dialRPC(t, "token="+ts.tokenFor(6, shared)+"&jsonRpc=true")
	v3 := ts.dial(t, ts.subQuery([]channel.ID{privFive}, ""))
	ts.waitUser(t, 5, 1)
	ts.waitUser(t, 6, 1)
	ts.waitSubscribers(t, privFive, 1)

	body := `[{"jsonrpc":"2.0","method":"publish","params":{"channelList":["` + privFive.String() + `"],"userList":[5,6],` +
		`"body":{"module_id":"im","command":"message","params":{"text":"hi"},"extra":{"revision_web":19}},` +
		`"user_params":{"5":{"counter":1},"6":{"counter":2},"7":{"counter":3}},"dictionary":{"chat":"General"},"expiry":86400,"type":"im"}},` +
		`{"jsonrpc":"2.0","method":"publish","params":{"userList":[0],"channelList":["` + shared.String() + `"],` +
		`"body":{"module_id":"app","command":"shared","params":[]},"user_params":[],"dictionary":[]}}]`
	code, answer, h := ts.postAPI(t, body, nil)
	if code != 200 || h.Get("Content-Type") != "application/json" ||
		answer != `[{"jsonrpc":"2.0","id":null,"result":true},{"jsonrpc":"2.0","id":null,"result":true}]` {
		t.Fatalf("answer %d %s %q", code, h.Get("Content-Type"), answer)
	}
	m := five.next(t)
	if string(m.UserParams) != `{"counter":1}` || string(m.Dictionary) != `{"chat":"General"}` || string(m.Sender) != `{"type":2}` {
		t.Fatalf("user 5 got %+v", m)
	}
	if m := six.next(t); string(m.UserParams) != `{"counter":2}` || string(m.Dictionary) != `{"chat":"General"}` {
		t.Fatalf("user 6 got %+v", m)
	}
	// The private channel's text subscriber gets the plain body.
	if f := v3.next(t); !strings.Contains(string(f.Text), `"command":"message"`) {
		t.Fatalf("v3 got %+v", f)
	}
	// The shared event: PHP's empty arrays mean no params.
	for _, c := range []*rpcClient{five, six} {
		m := c.next(t)
		if string(m.Body) != `{"module_id":"app","command":"shared","params":[]}` || m.UserParams != nil || m.Dictionary != nil {
			t.Fatalf("shared event %+v", m)
		}
	}
	ts.sentinelToUsers(t, 5, 6)
	five.nothingElse(t)
	six.nothingElse(t)
}

func TestV5APIErrors(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.MaxPayload = 4096 })
	ch := newChannel(t).String()
	cases := []struct {
		name, body string
		want       string
	}{
		{"parse error", `{"jsonrpc":"2.0",`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`},
		{"invalid request", `{"method":"publish"}`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request"}}`},
		{"unknown method", `{"jsonrpc":"2.0","method":"serverStats"}`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"Method not found"}}`},
		{"bad channel", `{"jsonrpc":"2.0","method":"publish","params":{"channelList":["xyz"],"body":{}},"id":4}`,
			`{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"4019: Request has an invalid channel id. \"xyz\""}}`},
		{"body not object", `{"jsonrpc":"2.0","method":"publish","params":{"channelList":["` + ch + `"],"body":"x"}}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"body must be an object"}}`},
		{"user_params not object", `{"jsonrpc":"2.0","method":"publish","params":{"userList":[1],"body":{},"user_params":{"1":5}}}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"user_params of user 1 must be an object"}}`},
		{"dictionary not object", `{"jsonrpc":"2.0","method":"publish","params":{"userList":[1],"body":{},"dictionary":"x"}}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"dictionary must be an object"}}`},
		{"negative user", `{"jsonrpc":"2.0","method":"publish","params":{"userList":[-1],"body":{}}}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"userList holds a negative user id"}}`},
		{"nobody", `{"jsonrpc":"2.0","method":"publish","params":{"userList":[0],"body":{}}}`, `{"jsonrpc":"2.0","id":null,"result":true}`},
		{"only a response", `{"jsonrpc":"2.0","id":1,"result":true}`, `{"jsonrpc":"2.0","id":null,"result":null}`},
		{"last seen bad user", `{"jsonrpc":"2.0","method":"updateUsersLastSeen","params":{"x":1}}`,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"not a user id: \"x\""}}`},
		// Wrong types are told in the protocol's words, never Go's.
		{"expiry negative", `{"jsonrpc":"2.0","method":"publish","params":{"userList":[1],"body":{},"expiry":-1},"id":1}`,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"expiry must be a whole number from 0 to 4294967295"}}`},
		{"expiry string", `{"jsonrpc":"2.0","method":"publish","params":{"userList":[1],"body":{},"expiry":"1"},"id":1}`,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"expiry must be a whole number from 0 to 4294967295"}}`},
		{"channelList not array", `{"jsonrpc":"2.0","method":"publish","params":{"channelList":"x","body":{}},"id":1}`,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"channelList must be an array"}}`},
		{"channel not string", `{"jsonrpc":"2.0","method":"publish","params":{"channelList":[1],"body":{}},"id":1}`,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"channelList must be a string"}}`},
		{"type not string", `{"jsonrpc":"2.0","method":"publish","params":{"userList":[1],"body":{},"type":{}},"id":1}`,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"type must be a string"}}`},
		{"user id not integer", `{"jsonrpc":"2.0","method":"getUsersLastSeen","params":{"userList":[1.5]},"id":1}`,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"user ids must be integers"}}`},
		{"last seen not integer", `{"jsonrpc":"2.0","method":"updateUsersLastSeen","params":{"1":"now"},"id":1}`,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"a member of params must be an integer"}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, got, _ := ts.postAPI(t, tc.body, nil)
			if code != 200 || got != tc.want {
				t.Fatalf("answer %d\n got %s\nwant %s", code, got, tc.want)
			}
		})
	}

	body := `{"jsonrpc":"2.0","method":"publish","params":{"userList":[1],"body":{}}}`
	for name, sig := range map[string]string{"wrong": strings.Repeat("0", 40), "missing": "", "upper case": strings.ToUpper(
		hex.EncodeToString(ts.signer.Sign([]byte(body))))} {
		code, got, _ := ts.postAPI(t, body, &sig)
		if code != http.StatusForbidden || !strings.Contains(got, `"jsonrpc":"2.0"`) || !strings.Contains(got, "4026: Wrong request signature.") {
			t.Fatalf("%s signature: %d %s", name, code, got)
		}
	}
	big := `{"jsonrpc":"2.0","method":"publish","params":{"userList":[1],"body":{"x":"` + strings.Repeat("a", 5000) + `"}}}`
	if code, _, _ := ts.postAPI(t, big, nil); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize: %d", code)
	}
	resp, err := http.Get(ts.URL + "/api/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

func TestV5APILastSeen(t *testing.T) {
	ts := newTestServer(t, nil)
	online := ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	ts.waitUser(t, 1, 1)
	_ = online
	past := time.Now().Add(-100 * time.Second).Unix()
	code, got, _ := ts.postAPI(t, `{"jsonrpc":"2.0","method":"updateUsersLastSeen","params":{"2":`+jsonInt(past)+`,"1":`+jsonInt(past)+`}}`, nil)
	if code != 200 || got != `{"jsonrpc":"2.0","id":null,"result":true}` {
		t.Fatalf("update: %d %s", code, got)
	}
	if code, got, _ := ts.postAPI(t, `{"jsonrpc":"2.0","method":"updateUsersLastSeen","params":[]}`, nil); code != 200 || got != `{"jsonrpc":"2.0","id":null,"result":true}` {
		t.Fatalf("empty update: %d %s", code, got)
	}
	code, got, _ = ts.postAPI(t, `{"jsonrpc":"2.0","method":"getUsersLastSeen","params":{"userList":[1,2,3]}}`, nil)
	var r struct {
		JSONRPC string           `json:"jsonrpc"`
		Result  map[string]int64 `json:"result"`
	}
	if err := json.Unmarshal([]byte(got), &r); err != nil || code != 200 || r.JSONRPC != "2.0" || len(r.Result) != 2 ||
		r.Result["1"] != 0 || r.Result["2"] < 100 || r.Result["2"] > 105 {
		t.Fatalf("getUsersLastSeen: %d %s", code, got)
	}
	// The subscriber's view is the same.
	if r := online.call(t, "getUsersLastSeen", `{"userList":[2]}`); !strings.HasPrefix(string(r.Result), `{"2":10`) {
		t.Fatalf("client view %s", r.Result)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// /api/ is a trusted route: with an internal listener it is served there.
func TestV5APIIsTrusted(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, c := range []struct {
		h    http.Handler
		want int
	}{{ts.rt.PublicHandler(), http.StatusNotFound}, {ts.rt.TrustedHandler(), http.StatusMethodNotAllowed}} {
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/", nil))
		if rec.Code != c.want {
			t.Fatalf("status %d, want %d", rec.Code, c.want)
		}
	}
}

// The backend's batches are bounded by size only: PHP cuts them at the
// payload limit, not at a count.
func TestV5APILongBatch(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t).String()
	call := `{"jsonrpc":"2.0","method":"publish","params":{"channelList":["` + ch + `"],"body":{}}}`
	n := 150
	code, got, _ := ts.postAPI(t, "["+strings.TrimSuffix(strings.Repeat(call+",", n), ",")+"]", nil)
	want := "[" + strings.TrimSuffix(strings.Repeat(`{"jsonrpc":"2.0","id":null,"result":true},`, n), ",") + "]"
	if code != 200 || got != want {
		t.Fatalf("%d %.200s", code, got)
	}
	if s := ts.broker.Stats(); s.Messages != n {
		t.Fatalf("stored %d messages, want %d", s.Messages, n)
	}
}
