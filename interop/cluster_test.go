package interop

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/redisconn"
	"github.com/pushpull/pushpull/internal/redistest"
	redisstore "github.com/pushpull/pushpull/internal/store/redis"
)

// Cluster tests run two or three pushpull processes on one real
// redis-server, started by the test on a free port, and drive the official
// PullClient across them.

// startNodes starts n cluster nodes on redis.
func startNodes(t *testing.T, redis *redistest.Server, n int, args ...string) []*server {
	t.Helper()
	nodes := make([]*server, n)
	for i := range nodes {
		nodes[i] = startServer(t, append([]string{"--redis", redis.URL()}, args...)...)
	}
	return nodes
}

// status is the status of a GET of path on a node, 0 when it failed.
func status(s *server, path string) int {
	resp, err := http.Get(s.base + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReady polls /readyz (the node offers no other signal) until it
// answers want.
func waitReady(t *testing.T, s *server, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for status(s, "/readyz") != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz did not answer %d within 15 s", s.base, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterCrossNode: a message published on one node reaches clients on
// another, once, in text (v3) and protobuf (v4) mode, over WebSocket and
// long polling.
func TestClusterCrossNode(t *testing.T) {
	redis := redistest.Start(t)
	nodes := startNodes(t, redis, 2)
	a, b := nodes[0], nodes[1]
	for _, tc := range []struct {
		name      string
		transport string
		v4        bool
	}{{"v3-websocket", "websocket", false}, {"v4-websocket", "websocket", true}, {"v4-longpolling", "longpolling", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			priv, pub, shared := newID(t), newID(t), newID(t)
			cfg := makeConfig(a.base, signatureKey, 3, priv, shared)
			if tc.v4 {
				cfg = makeConfigV4(a.base, 1, priv, pub, shared)
			}
			c := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: 1, Transport: tc.transport})
			c.waitOnline(ctx)
			b.publish(t, body("application", "textFromB", `{"n":1}`), priv)
			checkMessage(t, c.nextMessage(ctx), "application", "textFromB", `{"n":1}`)
			b.publishProtobuf(t, body("application", "protobufFromB", `{"n":2}`), shared)
			checkMessage(t, c.nextMessage(ctx), "application", "protobufFromB", `{"n":2}`)
			// Nothing came twice: the next message is the next one published.
			a.publish(t, body("application", "fromA", `{"n":3}`), priv)
			checkMessage(t, c.nextMessage(ctx), "application", "fromA", `{"n":3}`)
		})
	}
}

// TestClusterRecoverOnOtherNode: a client that was on node A comes back on
// node B with its mid and gets exactly what it missed.
func TestClusterRecoverOnOtherNode(t *testing.T) {
	redis := redistest.Start(t)
	nodes := startNodes(t, redis, 2)
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	priv, shared := newID(t), newID(t)
	c := startPullClient(t, ctx, ClientInput{Config: makeConfig(a.base, signatureKey, 3, priv, shared), UserID: 1, Transport: "websocket"})
	c.waitOnline(ctx)
	a.publish(t, body("application", "seen", `{}`), priv)
	first := c.nextMessage(ctx)
	checkMessage(t, first, "application", "seen", `{}`)
	c.Stop()
	for i := 1; i <= 3; i++ {
		a.publish(t, body("application", "missed", fmt.Sprintf(`{"n":%d}`, i)), priv)
	}
	c2 := startPullClient(t, ctx, ClientInput{Config: makeConfig(b.base, signatureKey, 3, priv, shared), UserID: 1, Transport: "websocket", MID: first.MID})
	for i := 1; i <= 3; i++ {
		checkMessage(t, c2.nextMessage(ctx), "application", "missed", fmt.Sprintf(`{"n":%d}`, i))
	}
	a.publish(t, body("application", "sentinel", `{}`), shared)
	checkMessage(t, c2.nextMessage(ctx), "application", "sentinel", `{}`)
}

// TestClusterNodeKilled: clients reach the cluster through a load balancer;
// their node is killed with SIGKILL while messages keep being published
// through another; they reconnect through the balancer to a surviving node
// and receive every message once, in order.
func TestClusterNodeKilled(t *testing.T) {
	redis := redistest.Start(t)
	nodes := startNodes(t, redis, 3)
	lb := startBalancer(t, nodes)
	ctx := testContext(t)
	type sub struct {
		c    *PullClient
		priv string
	}
	shared := newID(t)
	var subs []sub
	// WebSocket clients, text and protobuf: the SDK reports a long-polling
	// request cut by a dying node as an error event, which the harness
	// counts as a failure.
	for i, v4 := range []bool{false, true} {
		priv := newID(t)
		cfg := makeConfig(lb.base, signatureKey, 3, priv, shared)
		if v4 {
			cfg = makeConfigV4(lb.base, i+1, priv, newID(t), shared)
		}
		c := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: i + 1, Transport: "websocket"})
		c.waitOnline(ctx)
		subs = append(subs, sub{c, priv})
	}
	if got := lb.backendsUsed(); len(got) != 1 || got[0] != 0 {
		t.Fatalf("balancer sent clients to nodes %v; want node 0 only", got)
	}
	nodes[1].publish(t, body("application", "before", `{}`), shared)
	for _, s := range subs {
		checkMessage(t, s.c.nextMessage(ctx), "application", "before", `{}`)
	}

	nodes[0].kill(t)
	const missed = 5
	for i := 1; i <= missed; i++ {
		nodes[1].publish(t, body("application", "during", fmt.Sprintf(`{"n":%d}`, i)), shared)
	}
	for _, s := range subs {
		nodes[2].publish(t, body("application", "private", `{}`), s.priv)
	}
	for _, s := range subs {
		for i := 1; i <= missed; i++ {
			checkMessage(t, s.c.nextMessage(ctx), "application", "during", fmt.Sprintf(`{"n":%d}`, i))
		}
		checkMessage(t, s.c.nextMessage(ctx), "application", "private", `{}`)
	}
	nodes[2].publish(t, body("application", "sentinel", `{}`), shared)
	for _, s := range subs {
		checkMessage(t, s.c.nextMessage(ctx), "application", "sentinel", `{}`)
	}
}

// TestClusterRedisRestart: with Redis gone, nodes keep their clients, say
// not ready (yet live) and refuse publishes; once it is back they resubscribe and
// deliver, including what was published before they had resubscribed.
func TestClusterRedisRestart(t *testing.T) {
	redis := redistest.Start(t)
	nodes := startNodes(t, redis, 2)
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	priv, shared := newID(t), newID(t)
	c := startPullClient(t, ctx, ClientInput{Config: makeConfig(a.base, signatureKey, 3, priv, shared), UserID: 1, Transport: "websocket"})
	c.waitOnline(ctx)
	b.publish(t, body("application", "before", `{}`), priv)
	checkMessage(t, c.nextMessage(ctx), "application", "before", `{}`)

	redis.Stop()
	waitReady(t, a, http.StatusServiceUnavailable)
	if code := status(a, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz with Redis down answered %d; a live node must not be restarted for it", code)
	}
	if code, text := tryPublish(b, body("application", "refused", `{}`), priv); code < 500 {
		t.Fatalf("publish with Redis down answered %d %q; want a 5xx refusal", code, text)
	}
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	// Publish as soon as node b accepts, which may be before node a has
	// resubscribed: a must still deliver it.
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, text := tryPublish(b, body("application", "after", `{}`), priv)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after the Redis restart still refused: %d %q", code, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkMessage(t, c.nextMessage(ctx), "application", "after", `{}`)
	waitReady(t, a, http.StatusOK)
	b.publish(t, body("application", "sentinel", `{}`), shared)
	checkMessage(t, c.nextMessage(ctx), "application", "sentinel", `{}`)
}

func tryPublish(s *server, body string, ids ...string) (int, string) {
	resp, err := http.Post(s.internal+"/pub/?CHANNEL_ID="+strings.Join(ids, "/"), "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// balancer is a TCP load balancer for the tests: each connection goes to
// the first node that accepts it, as a balancer with health checks sends
// clients away from a dead node.
type balancer struct {
	base  string
	ln    net.Listener
	nodes []string
	mu    sync.Mutex
	used  map[int]bool
}

func startBalancer(t *testing.T, nodes []*server) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &balancer{base: "http://" + ln.Addr().String(), ln: ln, used: make(map[int]bool)}
	for _, n := range nodes {
		lb.nodes = append(lb.nodes, strings.TrimPrefix(n.base, "http://"))
	}
	var conns sync.WaitGroup
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); lb.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return lb
}

func (lb *balancer) serve(c net.Conn) {
	defer c.Close()
	for i, addr := range lb.nodes {
		up, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		lb.mu.Lock()
		lb.used[i] = true
		lb.mu.Unlock()
		defer up.Close()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
		<-done
		<-done
		return
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func (lb *balancer) backendsUsed() []int {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	var out []int
	for i := range lb.nodes {
		if lb.used[i] {
			out = append(out, i)
		}
	}
	return out
}

// TestClusterRESTEventAdd: the PullClient takes its config from node B's
// REST API; pull.application.event.add called on node A reaches it. The
// registry (application, token, channels) is the one in Redis.
func TestClusterRESTEventAdd(t *testing.T) {
	redis := redistest.Start(t)
	nodes := startNodes(t, redis, 2)
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	tok, _ := clusterRegistry(t, redis)
	c := startPullClient(t, ctx, ClientInput{UserID: 1, Transport: "websocket", REST: &RESTAuth{URL: b.base, Auth: tok}})
	c.mustWaitFor(ctx, "config request", func(e Event) bool { return e.Event == "rest" })
	c.waitOnline(ctx)
	f := &restFixture{srv: a, token: tok}
	f.eventAdd(t, url.Values{"COMMAND": {"toShared"}, "PARAMS[n]": {"1"}})
	checkMessage(t, c.nextMessage(ctx), "application", "toShared", `{"n":"1"}`)
	f.eventAdd(t, url.Values{"COMMAND": {"toMe"}, "USER_ID": {"1"}, "PARAMS": {`{"ok":true}`}})
	checkMessage(t, c.nextMessage(ctx), "application", "toMe", `{"ok":true}`)
	f.eventAdd(t, url.Values{"COMMAND": {"sentinel"}})
	checkMessage(t, c.nextMessage(ctx), "application", "sentinel", `{}`)
}

// clusterRegistry registers, in the cluster's Redis registry, an
// application with user 1 and user 2 (an administrator), and returns their
// access tokens.
func clusterRegistry(t *testing.T, redis *redistest.Server) (user1, admin2 string) {
	t.Helper()
	ctx := t.Context()
	client, err := redisconn.Open(ctx, redis.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	st, err := redisstore.Open(ctx, client, "", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	_, _, tok1, tok2 := seedRegistry(t, st)
	return tok1.AccessToken, tok2.AccessToken
}

// TestClusterV5 runs protocol version 5 across nodes: user 1 on node A
// watches user 2, who connects to node B; events from node B's REST and
// user 2's own messages reach user 1; user 2 leaving is seen on node A.
func TestClusterV5(t *testing.T) {
	redis := redistest.Start(t)
	nodes := startNodes(t, redis, 2, "--server-version", "5", "--jsonrpc-ping-interval", v5Ping.String())
	a, b := nodes[0], nodes[1]
	ctx := testContext(t)
	tok1, tok2 := clusterRegistry(t, redis)
	watcher := startPullClient(t, ctx, ClientInput{UserID: 1, Transport: "websocket", REST: &RESTAuth{URL: a.base, Auth: tok1}})
	watcher.strict = true
	watcher.waitOnline(ctx)
	watcher.do(ctx, map[string]any{"cmd": "subscribeUserStatusChange", "userId": 2})

	other := startPullClient(t, ctx, ClientInput{UserID: 2, Transport: "websocket", REST: &RESTAuth{URL: b.base, Auth: tok2}})
	other.waitOnline(ctx)
	if e := watcher.mustWaitFor(ctx, "user 2 online", func(e Event) bool { return e.Event == "userStatus" }); e.UserID != 2 || !e.IsOnline {
		t.Fatalf("status %s", e.Line)
	}
	f := &restFixture{srv: b, token: tok2}
	f.eventAdd(t, url.Values{"COMMAND": {"fromB"}, "USER_ID": {"1"}, "PARAMS": {`{"n":1}`}})
	checkMessage(t, watcher.nextMessage(ctx), "application", "fromB", `{"n":1}`)

	other.do(ctx, map[string]any{"cmd": "sendMessage", "users": []int{1}, "moduleId": "application", "command": "hello", "params": map[string]any{"from": 2}})
	m := watcher.mustWaitFor(ctx, "the message from user 2", func(e Event) bool { return e.Event == "message" && e.Command == "hello" })
	if !m.Client || m.Extra.Sender == nil || m.Extra.Sender.Type != 1 || m.Extra.Sender.ID != "2" {
		t.Fatalf("client message %s", m.Line)
	}
	other.Stop()
	if e := watcher.mustWaitFor(ctx, "user 2 offline", func(e Event) bool { return e.Event == "userStatus" }); e.UserID != 2 || e.IsOnline {
		t.Fatalf("status %s", e.Line)
	}
	// No other status or message: the next is the sentinel sent after.
	f.eventAdd(t, url.Values{"COMMAND": {"sentinel"}, "USER_ID": {"1"}})
	checkMessage(t, watcher.nextMessage(ctx), "application", "sentinel", `{}`)
}
