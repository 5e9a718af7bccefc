package realtime

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/token"
)

func TestV5TokenConnectionReceivesChannelAndUserMessages(t *testing.T) {
	ts := newTestServer(t, nil)
	shared := newChannel(t)
	c := ts.dialRPC(t, "token="+ts.tokenFor(5, shared)+"&jsonRpc=true&revision=19")
	ts.waitUser(t, 5, 1)
	ts.waitSubscribers(t, shared, 1)

	// A backend's text publish to a channel of the token.
	ts.publish(t, `{"module_id":"im","command":"a","params":{}}`, shared)
	m := c.next(t)
	if len(m.Mid) != 26 || string(m.Body) != `{"module_id":"im","command":"a","params":{}}` || string(m.Sender) != `{"type":2}` ||
		m.UserParams != nil || m.Dictionary != nil {
		t.Fatalf("incoming.message params %+v", m)
	}

	// To the user, with its own params and a dictionary.
	ts.apiPublish(t, `{"userList":[5,6],"body":{"module_id":"im","command":"b","params":{"x":1}},`+
		`"user_params":{"5":{"name":"Five"},"6":{"name":"Six"}},"dictionary":{"d":"v"},"expiry":60}`)
	m = c.next(t)
	if string(m.UserParams) != `{"name":"Five"}` || string(m.Dictionary) != `{"d":"v"}` || !strings.Contains(string(m.Body), `"command":"b"`) {
		t.Fatalf("user message %+v", m)
	}

	// Through the user and a channel at once: one frame, with the user's
	// params even if the channel's delivery comes first.
	ts.apiPublish(t, `{"channelList":["`+shared.String()+`"],"userList":[5],"body":{"module_id":"im","command":"c","params":{}},"user_params":{"5":{"p":5}}}`)
	m = c.next(t)
	if !strings.Contains(string(m.Body), `"command":"c"`) || string(m.UserParams) != `{"p":5}` {
		t.Fatalf("double-routed message %+v", m)
	}
	ts.publish(t, `{"module_id":"im","command":"d","params":{}}`, shared)
	if m := c.next(t); !strings.Contains(string(m.Body), `"command":"d"`) {
		t.Fatalf("after the double-routed message: %+v", m)
	}
	ts.sentinelToUsers(t, 5)
	c.nothingElse(t)
}

func TestV5BadTokensAreRefusedWith4010(t *testing.T) {
	ts := newTestServer(t, nil)
	key := []byte("SECURITYKEY123456")
	now := time.Now()
	good := token.Claims{Issuer: testTenant, IssuedAt: now, Expires: now.Add(time.Hour), User: 5}
	expired := good
	expired.Expires = now.Add(-time.Second)
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	payload := enc(fmt.Sprintf(`{"iss":"%s","iat":%d,"exp":%d,"sub":"5"}`, testTenant, now.Unix(), now.Add(time.Hour).Unix()))
	tooMany := make([]channel.ID, 101)
	for i := range tooMany {
		tooMany[i] = newChannel(t)
	}
	many := good
	many.Channels = tooMany
	cases := map[string]string{
		"expired":         token.Sign(expired, key),
		"wrong key":       token.Sign(good, []byte("another key")),
		"alg none":        enc(`{"alg":"none","typ":"JWT"}`) + "." + payload + ".",
		"alg HS512":       enc(`{"alg":"HS512","typ":"JWT"}`) + "." + payload + "." + strings.Split(token.Sign(good, key), ".")[2],
		"missing claims":  token.Sign(token.Claims{Issuer: testTenant, IssuedAt: now, Expires: now.Add(time.Hour)}, key),
		"malformed":       "not.a.token",
		"too many chan":   token.Sign(many, key),
		"CHANNEL_ID bad":  "",
		"tampered":        strings.Replace(token.Sign(good, key), ".", ".x", 1),
		"truncated":       token.Sign(good, key)[:40],
		"signature of v3": ts.signer.SignChannel(newChannel(t)),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			q := "token=" + url.QueryEscape(tok) + "&jsonRpc=true"
			if tok == "" {
				q = "CHANNEL_ID=" + newChannel(t).String() + ".00&jsonRpc=true"
			}
			c := ts.dialRPC(t, q)
			if ce := c.waitClosed(t); ce.Code != 4010 || ce.Reason != "4010: Wrong Channel Id." {
				t.Fatalf("close %d %q", ce.Code, ce.Reason)
			}
			resp, body := longPoll(t, ts.URL+"/sub/?"+q)
			if resp.StatusCode != http.StatusBadRequest || body != "4010: Wrong Channel Id." {
				t.Fatalf("long poll %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestV5ChannelIDConnection(t *testing.T) {
	ts := newTestServer(t, nil)
	a := newChannel(t)
	c := ts.dialRPC(t, ts.subQuery([]channel.ID{a}, "jsonRpc=true"))
	ts.waitSubscribers(t, a, 1)
	ts.publish(t, `{"module_id":"m","command":"x","params":{}}`, a)
	if m := c.next(t); string(m.Body) != `{"module_id":"m","command":"x","params":{}}` {
		t.Fatalf("%+v", m)
	}
	r := c.call(t, "listChannels", `{}`)
	if string(r.Result) != `{"channels":[{"id":"`+a.String()+`","type":"channel"}]}` {
		t.Fatalf("listChannels %s", r.Result)
	}
	// Without a user or public id there is no one to publish as.
	if r := c.call(t, "publish", `{"userList":[1],"body":{}}`); r.Error == nil || r.Error.Code != -32602 {
		t.Fatalf("publish without identity: %+v", r)
	}
}

// Version 5, 4 and 3 subscribers of one channel each get a publish once,
// in their own format.
func TestV5CoexistsWithV3AndV4(t *testing.T) {
	ts := newTestServer(t, nil)
	priv, pub := newChannel(t), newChannel(t)
	v3 := ts.dial(t, "CHANNEL_ID="+url.QueryEscape(ts.signer.SignPrivate(priv, pub)))
	v4 := ts.dialBinary(t, ts.signer.SignPrivate(priv, pub), "")
	v5 := ts.dialRPC(t, "token="+ts.tokenFor(7, priv)+"&jsonRpc=true")
	ts.waitSubscribers(t, priv, 3)

	for i := range 2 {
		body := fmt.Sprintf(`{"module_id":"m","command":"n%d","params":{}}`, i)
		ts.apiPublish(t, `{"channelList":["`+priv.String()+`"],"body":`+body+`}`)
		f := v3.next(t)
		b := v4.next(t)
		r := v5.next(t)
		if string(f.Text) != body || b.GetBody() != body || string(r.Body) != body {
			t.Fatalf("message %d: v3 %s, v4 %s, v5 %s", i, f.Text, b.GetBody(), r.Body)
		}
		if f.MID != r.Mid {
			t.Fatalf("mids differ: %s %s", f.MID, r.Mid)
		}
	}
	// Nobody got a copy of either.
	ts.publish(t, sentinel, priv)
	v5.nothingElse(t)
	if f := v3.next(t); string(f.Text) != sentinel {
		t.Fatalf("v3 extra %+v", f)
	}
	if m := v4.next(t); m.GetBody() != sentinel {
		t.Fatalf("v4 extra %v", m)
	}
}

func TestV5Methods(t *testing.T) {
	ts := newTestServer(t, nil)
	a := newChannel(t)
	c := ts.dialRPC(t, "token="+ts.tokenFor(5, a)+"&jsonRpc=true")
	ts.waitUser(t, 5, 1)

	cases := []struct {
		name, send string
		want       string // the exact answer
	}{
		{"ping numeric id", `{"jsonrpc":"2.0","method":"ping","params":{},"id":1}`, `{"jsonrpc":"2.0","id":1,"result":"pong"}`},
		{"ping string id", `{"jsonrpc":"2.0","method":"ping","id":"x7"}`, `{"jsonrpc":"2.0","id":"x7","result":"pong"}`},
		{"listChannels", `{"jsonrpc":"2.0","method":"listChannels","params":{},"id":2}`,
			`{"jsonrpc":"2.0","id":2,"result":{"channels":[{"id":"` + a.String() + `","type":"channel"},{"id":"5","type":"user"}]}}`},
		{"parse error", `{"jsonrpc":"2.0",`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`},
		{"invalid request", `{"jsonrpc":"1.0","method":"ping","id":3}`, `{"jsonrpc":"2.0","id":3,"error":{"code":-32600,"message":"Invalid Request"}}`},
		{"empty batch", `[]`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request"}}`},
		{"unknown method", `{"jsonrpc":"2.0","method":"nope","id":4}`, `{"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"Method not found"}}`},
		{"params not an object", `{"jsonrpc":"2.0","method":"getUsersLastSeen","params":[1],"id":5}`,
			`{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"params must be an object"}}`},
		{"subscribe without userId", `{"jsonrpc":"2.0","method":"subscribeStatusChange","params":{},"id":6}`,
			`{"jsonrpc":"2.0","id":6,"error":{"code":-32602,"message":"userId must be a positive user id"}}`},
		{"batch too long", "[" + strings.TrimSuffix(strings.Repeat(`{"jsonrpc":"2.0","method":"ping","id":1},`, 101), ",") + "]",
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"a batch holds at most 100 calls"}}`},
		{"batch", `[{"jsonrpc":"2.0","method":"ping","id":8},{"jsonrpc":"2.0","method":"nope","id":9},5]`,
			`[{"jsonrpc":"2.0","id":8,"result":"pong"},{"jsonrpc":"2.0","id":9,"error":{"code":-32601,"message":"Method not found"}},{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request"}}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.send(t, tc.send)
			var got string
			select {
			case got = <-c.frames:
			case <-time.After(10 * time.Second):
				t.Fatal("no answer")
			}
			<-c.resps
			if got != tc.want {
				t.Fatalf("answer\n got %s\nwant %s", got, tc.want)
			}
		})
	}

	// getUsersLastSeen with bad params.
	if r := c.call(t, "getUsersLastSeen", `{"userList":"5"}`); r.Error == nil || r.Error.Code != -32602 {
		t.Fatalf("bad userList: %+v", r)
	}
	// User ids may be strings of digits: b24jssdk re-subscribes with them.
	if r := c.call(t, "subscribeStatusChange", `{"userId":"3"}`); string(r.Result) != "true" {
		t.Fatalf("string userId: %+v", r)
	}
	if r := c.call(t, "getUsersLastSeen", `{"userList":["5",5]}`); string(r.Result) != `{"5":0}` {
		t.Fatalf("string ids in userList: %+v", r)
	}
	for _, bad := range []string{`{"userId":"3x"}`, `{"userId":1.5}`, `{"userId":"-"}`, `{"userId":true}`, `{"userId":"-3"}`} {
		if r := c.call(t, "subscribeStatusChange", bad); r.Error == nil || r.Error.Code != -32602 {
			t.Fatalf("%s: %+v", bad, r)
		}
	}
	// Notifications, a client's response and the non-JSON frames get no
	// answer; the next request is answered as usual.
	c.send(t, `{"jsonrpc":"2.0","method":"ping"}`)
	c.send(t, `{"jsonrpc":"2.0","id":3,"result":{}}`)
	c.send(t, "pong")
	c.send(t, "mack:00000000000000000000000001")
	if r := c.call(t, "ping", `{}`); string(r.Result) != `"pong"` {
		t.Fatalf("ping after notifications: %+v", r)
	}
	// A text "ping" from the client is answered with "pong".
	for len(c.frames) > 0 {
		<-c.frames // the answers read above
	}
	c.send(t, "ping")
	select {
	case f := <-c.frames:
		if f != "pong" {
			t.Fatalf("answer to ping: %q", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no pong")
	}
}

func TestV5ClientPublish(t *testing.T) {
	ts := newTestServer(t, nil)
	priv, pub := newChannel(t), newChannel(t)
	alice := ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	bob := ts.dialRPC(t, "token="+ts.tokenFor(2)+"&jsonRpc=true")
	carol := ts.dialBinary(t, ts.signer.SignPrivate(priv, pub), "") // v4, reached by her public id
	ts.waitUser(t, 1, 1)
	ts.waitUser(t, 2, 1)
	ts.waitSubscribers(t, priv, 1)

	if r := alice.call(t, "publish", `{"userList":[2],"body":{"module_id":"chat","command":"hi","params":{}},"expiry":0}`); string(r.Result) != "true" {
		t.Fatalf("publish: %+v", r)
	}
	m := bob.next(t)
	if string(m.Sender) != `{"type":1,"id":"1"}` || string(m.Body) != `{"module_id":"chat","command":"hi","params":{}}` {
		t.Fatalf("bob got %+v", m)
	}
	// Public channels, in both of the clients' forms, as one batch.
	signed := ts.signer.SignPublic(pub)
	pubID, sig, _ := strings.Cut(signed, ".")
	alice.send(t, `[{"jsonrpc":"2.0","method":"publish","params":{"channelList":["`+signed+`"],"body":{"n":1}},"id":1},`+
		`{"jsonrpc":"2.0","method":"publish","params":{"channelList":[{"publicId":"`+pubID+`","signature":"`+sig+`"}],"body":{"n":2}},"id":2}]`)
	if r := alice.answer(t); len(r) != 2 || string(r[0].Result) != "true" || string(r[1].Result) != "true" {
		t.Fatalf("batch answer %+v", r)
	}
	if a, b := carol.next(t), carol.next(t); a.GetBody() != `{"n":1}` || b.GetBody() != `{"n":2}` || a.GetSender().GetType() != 1 {
		t.Fatalf("carol got %v, %v", a, b)
	}

	bad := map[string]string{
		"bad signature":  `{"channelList":["` + pubID + `.` + strings.Repeat("0", len(sig)) + `"],"body":{}}`,
		"private as pub": `{"channelList":["` + ts.signer.SignChannel(priv) + `"],"body":{}}`,
		"no receivers":   `{"body":{}}`,
		"body not obj":   `{"userList":[2],"body":"text"}`,
		"no body":        `{"userList":[2]}`,
		"user zero":      `{"userList":[0],"body":{}}`,
		"userList type":  `{"userList":"2","body":{}}`,
		"too many":       `{"userList":[` + strings.TrimSuffix(strings.Repeat("3,", 101), ",") + `],"body":{}}`,
	}
	for name, params := range bad {
		if r := alice.call(t, "publish", params); r.Error == nil || r.Error.Code != -32602 {
			t.Fatalf("%s: %+v", name, r)
		}
	}
	// Nothing of the refused publishes arrived.
	if r := alice.call(t, "publish", `{"userList":[2],"body":{"last":true}}`); r.Error != nil {
		t.Fatal(r.Error)
	}
	if m := bob.next(t); string(m.Body) != `{"last":true}` {
		t.Fatalf("bob got %+v", m)
	}
}

func TestV5StatusChangesAndLastSeen(t *testing.T) {
	ts := newTestServer(t, nil)
	watcher := ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	ts.waitUser(t, 1, 1)
	if r := watcher.call(t, "subscribeStatusChange", `{"userId":2}`); string(r.Result) != "true" {
		t.Fatalf("subscribe: %+v", r)
	}
	if r := watcher.call(t, "getUsersLastSeen", `{"userList":[1,2]}`); string(r.Result) != `{"1":0}` {
		t.Fatalf("last seen before user 2 ever came: %s", r.Result)
	}

	type status struct {
		ModuleID string `json:"module_id"`
		Command  string `json:"command"`
		Params   struct {
			UserID int64 `json:"user_id"`
			Online bool  `json:"online"`
		} `json:"params"`
		Extra struct {
			ServerTimeUnix float64 `json:"server_time_unix"`
			RevisionWeb    *int    `json:"revision_web"`
		} `json:"extra"`
	}
	expect := func(online bool) {
		t.Helper()
		m := watcher.next(t)
		var s status
		if err := json.Unmarshal(m.Body, &s); err != nil {
			t.Fatal(err)
		}
		if s.ModuleID != "online" || s.Command != "userStatusChange" || s.Params.UserID != 2 || s.Params.Online != online ||
			s.Extra.ServerTimeUnix < float64(time.Now().Unix()-60) || s.Extra.RevisionWeb != nil {
			t.Fatalf("status event %s; want online=%v", m.Body, online)
		}
	}
	u2a := ts.dialRPC(t, "token="+ts.tokenFor(2)+"&jsonRpc=true")
	expect(true)
	u2b := ts.dialRPC(t, "token="+ts.tokenFor(2)+"&jsonRpc=true")
	ts.waitUser(t, 2, 2)
	if r := watcher.call(t, "getUsersLastSeen", `{"userList":[2]}`); string(r.Result) != `{"2":0}` {
		t.Fatalf("last seen while online: %s", r.Result)
	}
	_ = u2b.conn.Close()
	ts.waitUser(t, 2, 1)
	_ = u2a.conn.Close()
	expect(false) // only when the last one went
	ts.sentinelToUsers(t, 1)
	watcher.nothingElse(t)
	r := watcher.call(t, "getUsersLastSeen", `{"userList":[2,3]}`)
	var seen map[string]int64
	if err := json.Unmarshal(r.Result, &seen); err != nil || len(seen) != 1 || seen["2"] < 0 || seen["2"] > 5 {
		t.Fatalf("last seen after leaving: %s", r.Result)
	}

	// Unsubscribed: user 2 comes and goes unannounced. The watcher's own
	// watch of user 3 proves events would still flow.
	watcher.call(t, "unsubscribeStatusChange", `{"userId":2}`)
	watcher.call(t, "subscribeStatusChange", `{"userId":3}`)
	u2 := ts.dialRPC(t, "token="+ts.tokenFor(2)+"&jsonRpc=true")
	ts.waitUser(t, 2, 1)
	_ = u2.conn.Close()
	ts.waitUser(t, 2, 0)
	u3 := ts.dialRPC(t, "token="+ts.tokenFor(3)+"&jsonRpc=true")
	m := watcher.next(t)
	if !strings.Contains(string(m.Body), `"user_id":3,"online":true`) {
		t.Fatalf("after unsubscribing from 2, got %s", m.Body)
	}
	// Another tenant's user 3 is another user: while it is online, ours
	// leaving is still announced as offline.
	now := time.Now()
	other := token.Sign(token.Claims{Issuer: "other", IssuedAt: now, Expires: now.Add(time.Hour), User: 3}, []byte("SECURITYKEY123456"))
	ts.dialRPC(t, "token="+other+"&jsonRpc=true")
	waitFor(t, "the other tenant's user", func() bool {
		n, _ := ts.broker.Online(t.Context(), []channel.ID{channel.Presence("other", 3)})
		return n[0] == 1
	})
	_ = u3.conn.Close()
	if m := watcher.next(t); !strings.Contains(string(m.Body), `"user_id":3,"online":false`) {
		t.Fatalf("got %s; want our user 3 leaving", m.Body)
	}
}

func TestV5PingsAndDeadPeers(t *testing.T) {
	// The ping loop itself, fast: it pings, and a peer that never answers
	// is dropped after maxMissed pings.
	ts := newTestServer(t, func(o *Options) { o.RPCPingInterval = 20 * time.Millisecond })
	dead := ts.dialRPC(t, "token="+ts.tokenFor(2)+"&jsonRpc=true")
	select {
	case <-dead.pings:
	case <-time.After(10 * time.Second):
		t.Fatal("no ping")
	}
	select {
	case <-dead.closed:
	case <-dead.failed:
	case <-time.After(10 * time.Second):
		t.Fatal("a peer that never answers was not dropped")
	}
	ts.waitUser(t, 2, 0)

	// A peer that answers stays, however slowly it answers: the rounds
	// wait for its pong, where a short ticker would race the machine's load.
	ts = newTestServer(t, nil) // RPCPingInterval beyond the test
	live := ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	dead = ts.dialRPC(t, "token="+ts.tokenFor(2)+"&jsonRpc=true")
	ts.waitUser(t, 1, 1)
	ts.waitUser(t, 2, 1)
	liveSess := ts.wsSession(t, live.conn)
	ts.wsSession(t, dead.conn) // subscribed before its handshake: wait until it has a socket to ping
	// The live peer answers every ping, as the clients do.
	go func() {
		for range live.pings {
			if live.write("pong") != nil {
				return
			}
		}
	}()
	for round := range 10 * int(maxMissed) {
		ts.pingRound(true)
		switch {
		case round < int(maxMissed):
			select {
			case <-dead.pings:
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: no ping for the silent peer", round)
			}
		case round == int(maxMissed):
			// The silent one is dropped after maxMissed unanswered pings...
			select {
			case <-dead.closed:
			case <-dead.failed:
			case <-time.After(10 * time.Second):
				t.Fatal("a peer that never answers was not dropped")
			}
			ts.waitUser(t, 2, 0)
		}
		// ...while the live one stays.
		waitAnswered(t, liveSess)
	}
	if r := live.call(t, "ping", `{}`); string(r.Result) != `"pong"` {
		t.Fatalf("live peer: %+v", r)
	}
	if ts.hub.Subscribers(channel.User(testTenant, 1)) != 1 {
		t.Fatal("live peer was dropped")
	}
}

func TestV5RecoveryByMid(t *testing.T) {
	ts := newTestServer(t, nil)
	shared := newChannel(t)
	for i := range 3 {
		ts.apiPublish(t, fmt.Sprintf(`{"channelList":["%s"],"userList":[5],"body":{"n":%d},"user_params":{"5":{"u":%d}}}`, shared, i, i))
	}
	hist, err := ts.broker.History(t.Context(), []channel.ID{shared}, message.ID{}, testOptions().Replay)
	if err != nil || len(hist) != 3 {
		t.Fatalf("history %v %v", hist, err)
	}
	first := hist[0].Msg.ID.String()
	c := ts.dialRPC(t, "token="+ts.tokenFor(5, shared)+"&jsonRpc=true&mid="+first)
	for i := 1; i < 3; i++ {
		m := c.next(t)
		if string(m.Body) != fmt.Sprintf(`{"n":%d}`, i) || string(m.UserParams) != fmt.Sprintf(`{"u":%d}`, i) {
			t.Fatalf("replayed %+v", m)
		}
	}
	ts.publish(t, `{"n":"live"}`, shared)
	if m := c.next(t); string(m.Body) != `{"n":"live"}` {
		t.Fatalf("live after replay %+v", m)
	}
	// Each replayed message once, though it is in two channels' history.
	ts.sentinelToUsers(t, 5)
	c.nothingElse(t)
}

func TestV5LongPoll(t *testing.T) {
	ts := newTestServer(t, nil)
	shared := newChannel(t)
	q := ts.URL + "/sub/?token=" + ts.tokenFor(5, shared) + "&jsonRpc=true"
	done := startLongPoll(q)
	ts.waitUser(t, 5, 1)
	ts.apiPublish(t, `{"userList":[5],"body":{"module_id":"m","command":"lp","params":{}},"user_params":{"5":{"a":1}}}`)
	resp, body := awaitLongPoll(t, done)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("long poll %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var n struct {
		JSONRPC string     `json:"jsonrpc"`
		Method  string     `json:"method"`
		Params  rpcMessage `json:"params"`
	}
	if err := json.Unmarshal([]byte(body), &n); err != nil || n.Method != "incoming.message" || n.JSONRPC != "2.0" ||
		string(n.Params.UserParams) != `{"a":1}` {
		t.Fatalf("long poll body %s (%v)", body, err)
	}

	// A poll from the newest mid finds nothing and answers 304 with it (on
	// a server that holds polls briefly).
	quick := newTestServer(t, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	quick.apiPublish(t, `{"userList":[5],"body":{}}`)
	hist, err := quick.broker.History(t.Context(), []channel.ID{channel.User(testTenant, 5)}, message.ID{}, testOptions().Replay)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history %v %v", hist, err)
	}
	mid := hist[0].Msg.ID.String()
	resp, _ = longPoll(t, quick.URL+"/sub/?token="+quick.tokenFor(5, shared)+"&jsonRpc=true&mid="+mid)
	if resp.StatusCode != http.StatusNotModified || resp.Header.Get("Last-Message-Id") != mid {
		t.Fatalf("poll from the newest mid: %d, Last-Message-Id %q", resp.StatusCode, resp.Header.Get("Last-Message-Id"))
	}
}

// A replay goes out as one batch array; a live message alone, as a bare
// notification.
func TestV5ReplayIsOneBatch(t *testing.T) {
	ts := newTestServer(t, nil)
	shared := newChannel(t)
	ts.publish(t, `{"n":"old"}`, shared)
	for i := range 3 {
		ts.publish(t, fmt.Sprintf(`{"n":%d}`, i), shared)
	}
	hist, _ := ts.broker.History(t.Context(), []channel.ID{shared}, message.ID{}, testOptions().Replay)
	c := ts.dialRPC(t, "token="+ts.tokenFor(5, shared)+"&jsonRpc=true&mid="+hist[0].Msg.ID.String())
	var frame string
	select {
	case frame = <-c.frames:
	case <-time.After(10 * time.Second):
		t.Fatal("no replay")
	}
	var batch []json.RawMessage
	if err := json.Unmarshal([]byte(frame), &batch); err != nil || len(batch) != 3 {
		t.Fatalf("replay frame %s", frame)
	}
	for i := range 3 {
		if m := c.next(t); string(m.Body) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("replay %d: %+v", i, m)
		}
	}
	ts.publish(t, `{"n":"live"}`, shared)
	select {
	case frame = <-c.frames:
	case <-time.After(10 * time.Second):
		t.Fatal("no live message")
	}
	if !strings.HasPrefix(frame, `{"jsonrpc":"2.0","method":"incoming.message","params":{"mid":"`) {
		t.Fatalf("live frame %s", frame)
	}
}

// A long-polling version 5 client posts its mack: to server.publish, the
// client-publish route, without CHANNEL_ID.
func TestV5AckOverHTTP(t *testing.T) {
	ts := newTestServer(t, nil)
	post := func(body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/pubweb/", strings.NewReader(body))
		return do(t, req)
	}
	if code, body := post("mack:17957502860000000000000003"); code != 200 || body != "" {
		t.Fatalf("mack: %d %q", code, body)
	}
	// With the CHANNEL_ID the connector adds, as b24jssdk does.
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/pubweb/?"+ts.subQuery([]channel.ID{newChannel(t)}, ""), strings.NewReader("mack:1"))
	if code, body := do(t, req); code != 200 || body != "" {
		t.Fatalf("mack: %d %q", code, body)
	}
	if code, body := post("junk"); code != 400 || body != "4012: Public Channel Id is Required." {
		t.Fatalf("junk: %d %q", code, body)
	}
	if code, _ := post("mack:" + strings.Repeat("1", 100)); code != 400 {
		t.Fatalf("long mack: %d", code)
	}
}

// A JSON-RPC connection resuming from mid does not get mid again when its
// live copy is late (the broker stores before it fans out), through its
// user or a channel.
func TestV5RecoveryDoesNotResendTheMid(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	ts.apiPublish(t, `{"channelList":["`+ch.String()+`"],"userList":[5],"body":{}}`)
	hist, err := ts.broker.History(t.Context(), []channel.ID{ch}, message.ID{}, testOptions().Replay)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history %v %v", hist, err)
	}
	m := hist[0].Msg
	sess, err := ts.rt.openRPCSession(t.Context(), url.Values{"token": {ts.tokenFor(5, ch)}})
	if err != nil {
		t.Fatal(err)
	}
	sess.t = newLongPollConn() // a transport that holds the queue until asked
	if err := sess.subscribe(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer sess.detach()
	sess.Deliver(hub.NewDelivery(m, ch)) // the late live copy, while recovering
	if err := sess.replay(t.Context(), m.ID, true); err != nil {
		t.Fatal(err)
	}
	sess.Deliver(hub.NewDelivery(m, channel.User(testTenant, 5))) // and through the user, after
	if q := sess.take(); len(q) != 0 {
		t.Fatalf("queued %d copies of the mid the client resumed from", len(q))
	}
}
