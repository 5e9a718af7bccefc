package realtime

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

func TestBucket(t *testing.T) {
	l := RateLimit{PerSecond: 10, Burst: 20}
	t0 := time.Unix(1000, 0)
	var b bucket
	if !b.take(l, t0, 20) {
		t.Fatal("a new bucket does not hold its burst")
	}
	if b.take(l, t0, 1) {
		t.Fatal("an empty bucket gave a token")
	}
	// Half a second refills 5.
	if !b.take(l, t0.Add(500*time.Millisecond), 5) || b.take(l, t0.Add(500*time.Millisecond), 1) {
		t.Fatal("refill is not 10 a second")
	}
	// An hour idle refills to the burst, no more.
	later := t0.Add(time.Hour)
	if !b.take(l, later, 20) || b.take(l, later, 1) {
		t.Fatal("an idle bucket holds more or less than its burst")
	}
	// More than the burst is never given, however long one waits.
	var fresh bucket
	if fresh.take(l, t0, 21) {
		t.Fatal("a take over the burst succeeded")
	}
	if !(&bucket{}).take(RateLimit{}, t0, 1<<30) {
		t.Fatal("a zero rate limits")
	}
}

func TestBucketMapTakesAllOrNone(t *testing.T) {
	bm := newBucketMap[int](RateLimit{PerSecond: 1, Burst: 10}, 100)
	now := time.Unix(1000, 0)
	if !bm.takeAll(now, map[int]int{1: 8, 2: 3}) {
		t.Fatal("refused within the burst")
	}
	// Key 1 has 2 left: the request is refused and key 2 keeps its 7.
	if bm.takeAll(now, map[int]int{1: 3, 2: 7}) {
		t.Fatal("key 1 went over its burst")
	}
	if !bm.takeAll(now, map[int]int{2: 7}) || bm.takeAll(now, map[int]int{2: 1}) {
		t.Fatal("a refused request charged key 2")
	}
	if bm.takeAll(now, map[int]int{3: 11}) || bm.len() != 2 {
		t.Fatal("a new key over the burst was accepted or stored")
	}
}

// Many keys (an attacker with many addresses) cannot grow the map past
// its cap; keys still in use survive the sweeps of full ones.
func TestBucketMapIsBounded(t *testing.T) {
	const max = 64
	bm := newBucketMap[int](RateLimit{PerSecond: 1, Burst: 10}, max)
	now := time.Unix(1000, 0)
	for i := range 10 * max {
		if !bm.takeAll(now, map[int]int{i: 1}) {
			t.Fatalf("key %d refused", i)
		}
		if n := bm.len(); n > max {
			t.Fatalf("%d keys after %d inserts, cap %d", n, i+1, max)
		}
	}
	// Once refilled, the old buckets are swept before anything in use.
	bm = newBucketMap[int](RateLimit{PerSecond: 1, Burst: 10}, max)
	for i := range max - 1 {
		bm.takeAll(now, map[int]int{i: 1})
	}
	bm.takeAll(now.Add(time.Minute), map[int]int{-1: 10}) // in use, empty
	bm.takeAll(now.Add(time.Minute), map[int]int{-2: 1})  // at the cap: sweeps
	if bm.len() != 2 || bm.takeAll(now.Add(time.Minute), map[int]int{-1: 1}) {
		t.Fatalf("after the sweep: %d keys, or the bucket in use was dropped", bm.len())
	}
}

func TestClientPrefix(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:5000":            "192.0.2.7/32",
		"[::ffff:192.0.2.7]:5000":   "192.0.2.7/32",
		"[2001:db8:1:2:3::9]:443":   "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::]:443": "2001:db8:1:2::/64",
	} {
		if got := clientPrefix(&http.Request{RemoteAddr: addr}); got != netip.MustParsePrefix(want) {
			t.Errorf("clientPrefix(%s) = %s, want %s", addr, got, want)
		}
	}
}

// floodBatch is a RequestBatch of requests × perRequest messages, each to
// the receiver: issue 11's attack is 201 × 100 to a victim's public id in
// under 1 MiB.
func floodBatch(requests, perRequest int, to *pb.Receiver) *pb.RequestBatch {
	var b pb.RequestBatch
	for range requests {
		msgs := make([]*pb.IncomingMessage, perRequest)
		for i := range msgs {
			msgs[i] = &pb.IncomingMessage{Receivers: []*pb.Receiver{to}, Body: `{}`}
		}
		b.Requests = append(b.Requests, &pb.Request{Command: &pb.Request_IncomingMessages{
			IncomingMessages: &pb.IncomingMessagesRequest{Messages: msgs}}})
	}
	return &b
}

// A client flooding another's public id through /pubweb/ is answered 429
// once over the limits, and the victim keeps its connection and gets
// every message that was accepted, then the next one: it is never cut as
// a slow consumer (its send queue holds 1024, the limits' bursts 500).
// Without the limits the victim, a text-mode subscriber like the browser
// clients, is cut within a second of the first batch.
func TestPubWebFloodDoesNotDropTheVictim(t *testing.T) {
	ts := newTestServer(t, nil)
	vPriv, vPub, aPriv, aPub := newChannel(t), newChannel(t), newChannel(t), newChannel(t)
	victim := ts.dial(t, "CHANNEL_ID="+url.QueryEscape(ts.signer.SignPrivate(vPriv, vPub)))
	ts.waitSubscribers(t, vPriv, 1)
	path := "/pubweb/?CHANNEL_ID=" + url.QueryEscape(ts.signer.SignPrivate(aPriv, aPub))

	// The batch of the report: one request of it is within 2.x's limits,
	// the whole is not.
	code, body := ts.postBatch(t, path, floodBatch(201, 100, ts.public(vPub)))
	if code != http.StatusBadRequest || string(body) != "4016: Request exceeded the maximum number of messages." {
		t.Fatalf("20,100 messages in one batch: %d %q", code, body)
	}
	// The same flood in batches 2.x would take.
	accepted := 0
	for i := 0; ; i++ {
		if i == 50 {
			t.Fatal("50 batches of 100 messages accepted")
		}
		code, body := ts.postBatch(t, path, floodBatch(1, 100, ts.public(vPub)))
		if code == http.StatusOK {
			accepted++
			continue
		}
		if code != http.StatusTooManyRequests || string(body) != "4028: Too many messages, slow down." {
			t.Fatalf("batch %d: %d %q", i, code, body)
		}
		break
	}
	if accepted == 0 {
		t.Fatal("the first batch of 100 was refused")
	}
	ts.publish(t, `{"after":"flood"}`, vPriv)
	for i := range accepted * 100 {
		if f := victim.next(t); string(f.Text) != `{}` {
			t.Fatalf("message %d: %s", i, f.Text)
		}
	}
	if f := victim.next(t); string(f.Text) != `{"after":"flood"}` {
		t.Fatalf("after the flood: %s", f.Text)
	}
}

// publishBinaryTo publishes body to a private channel as the backend.
func (ts *testServer) publishBinaryTo(t *testing.T, ch channel.ID, body string) {
	t.Helper()
	if code, resp := ts.postBatch(t, "/pub/?binaryMode=true", &pb.RequestBatch{Requests: []*pb.Request{incoming(body, 0, private(ch))}}); code != http.StatusOK {
		t.Fatalf("backend publish: %d %q", code, resp)
	}
}

// Over HTTP the sender's address is charged, whatever the receivers.
func TestPubWebLimitPerAddress(t *testing.T) {
	ts := newTestServer(t, func(o *Options) {
		o.ClientPublishIPRate = RateLimit{PerSecond: 1, Burst: 5}
		o.ClientPublishTargetRate = RateLimit{}
	})
	aPriv, aPub := newChannel(t), newChannel(t)
	path := "/pubweb/?CHANNEL_ID=" + url.QueryEscape(ts.signer.SignPrivate(aPriv, aPub))
	for i := range 5 {
		if code, body := ts.postBatch(t, path, floodBatch(1, 1, ts.public(newChannel(t)))); code != http.StatusOK {
			t.Fatalf("message %d: %d %q", i, code, body)
		}
	}
	// Another sender's channel from the same address shares the budget.
	bPriv, bPub := newChannel(t), newChannel(t)
	path = "/pubweb/?CHANNEL_ID=" + url.QueryEscape(ts.signer.SignPrivate(bPriv, bPub))
	if code, body := ts.postBatch(t, path, floodBatch(1, 1, ts.public(newChannel(t)))); code != http.StatusTooManyRequests || string(body) != "4028: Too many messages, slow down." {
		t.Fatalf("over the address's burst: %d %q", code, body)
	}
}

// A version 4 WebSocket over its budget is closed with 4028, as 2.x closes
// a connection on any bad request; what it sent before reached the
// receiver, which stays connected.
func TestWebSocketPublishLimitV4(t *testing.T) {
	ts := newTestServer(t, func(o *Options) {
		o.ClientPublishRate = RateLimit{PerSecond: 1, Burst: 150}
		o.ClientPublishTargetRate = RateLimit{}
	})
	vPriv, vPub, aPriv, aPub := newChannel(t), newChannel(t), newChannel(t), newChannel(t)
	victim := ts.dialBinary(t, ts.signer.SignPrivate(vPriv, vPub), "")
	attacker := ts.dialBinary(t, ts.signer.SignPrivate(aPriv, aPub), "")
	ts.waitSubscribers(t, vPriv, 1)
	ts.waitSubscribers(t, aPriv, 1)
	// Also over 2.x's limit per batch, whatever the budget.
	attacker.send(t, floodBatch(2, 60, ts.public(vPub)))
	if ce := attacker.waitClosed(t); ce.Code != 4016 {
		t.Fatalf("120 messages in one batch: closed with %d %q", ce.Code, ce.Reason)
	}
	attacker = ts.dialBinary(t, ts.signer.SignPrivate(aPriv, aPub), "")
	attacker.send(t, floodBatch(1, 100, ts.public(vPub)))
	attacker.send(t, floodBatch(1, 100, ts.public(vPub)))
	if ce := attacker.waitClosed(t); ce.Code != 4028 || ce.Reason != "4028: Too many messages, slow down." {
		t.Fatalf("closed with %d %q", ce.Code, ce.Reason)
	}
	ts.publishBinaryTo(t, vPriv, `{"after":"flood"}`)
	for i := range 100 {
		if m := victim.next(t); m.GetBody() != `{}` {
			t.Fatalf("message %d: %v", i, m)
		}
	}
	if m := victim.next(t); m.GetBody() != `{"after":"flood"}` {
		t.Fatalf("after the flood: %v", m)
	}
}

// A version 5 client over its budget gets a JSON-RPC error for that call
// and keeps its connection; a receiver's own limit holds across senders.
func TestWebSocketPublishLimitV5(t *testing.T) {
	ts := newTestServer(t, func(o *Options) {
		o.ClientPublishRate = RateLimit{PerSecond: 1, Burst: 3}
		o.ClientPublishTargetRate = RateLimit{PerSecond: 1, Burst: 5}
	})
	alice := ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	bob := ts.dialRPC(t, "token="+ts.tokenFor(2)+"&jsonRpc=true")
	carol := ts.dialRPC(t, "token="+ts.tokenFor(3)+"&jsonRpc=true")
	ts.waitUser(t, 2, 1)
	publish := func(c *rpcClient, n int) rpcResponse {
		return c.call(t, "publish", fmt.Sprintf(`{"userList":[2],"body":{"n":%d}}`, n))
	}
	refused := func(r rpcResponse) bool {
		return r.Error != nil && r.Error.Code == -32000 && r.Error.Message == "4028: Too many messages, slow down."
	}
	for n := range 3 {
		if r := publish(alice, n); string(r.Result) != "true" {
			t.Fatalf("publish %d: %+v", n, r)
		}
	}
	if r := publish(alice, 3); !refused(r) {
		t.Fatalf("over the connection's burst: %+v", r)
	}
	if r := alice.call(t, "ping", `{}`); string(r.Result) != `"pong"` {
		t.Fatalf("the connection does not answer after a refusal: %+v", r)
	}
	// Bob may take 5 client messages at once: 3 from Alice, 2 from Carol.
	for n := 10; n < 12; n++ {
		if r := publish(carol, n); string(r.Result) != "true" {
			t.Fatalf("publish %d: %+v", n, r)
		}
	}
	if r := publish(carol, 12); !refused(r) {
		t.Fatalf("over the receiver's burst: %+v", r)
	}
	var got []string
	for range 5 {
		got = append(got, string(bob.next(t).Body))
	}
	if want := `{"n":0} {"n":1} {"n":2} {"n":10} {"n":11}`; strings.Join(got, " ") != want {
		t.Fatalf("bob got %s, want %s", strings.Join(got, " "), want)
	}
	// The backend is not limited.
	ts.apiPublish(t, `{"userList":[2],"body":{"from":"backend"}}`)
	if m := bob.next(t); string(m.Body) != `{"from":"backend"}` {
		t.Fatalf("bob got %s", m.Body)
	}
}
