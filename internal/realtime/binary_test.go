package realtime

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// binClient is a binaryMode=true WebSocket subscriber.
type binClient struct {
	conn   net.Conn
	msgs   chan *pb.OutgoingMessage
	resp   chan *pb.ResponseBatch // batches without outgoing messages
	done   chan wsutil.ClosedError
	failed chan error
}

func (ts *testServer) dialBinary(t *testing.T, channelID string, extra string) *binClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/sub/?CHANNEL_ID=" + url.QueryEscape(channelID) + "&binaryMode=true&revision=19"
	if extra != "" {
		u += "&" + extra
	}
	conn, r, err := dialRaw(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	c := &binClient{conn: conn, msgs: make(chan *pb.OutgoingMessage, 1000), resp: make(chan *pb.ResponseBatch, 10), done: make(chan wsutil.ClosedError, 1), failed: make(chan error, 1)}
	readerCleanup(t, conn, func(quit <-chan struct{}) { c.read(t, conn, r, quit) })
	return c
}

func (c *binClient) read(t *testing.T, conn net.Conn, r io.Reader, quit <-chan struct{}) {
	readServer(conn, r, quit, c.done, c.failed, func(data []byte, op ws.OpCode) bool {
		if op != ws.OpBinary {
			t.Errorf("binary subscriber got opcode %v", op)
			return false
		}
		var b pb.ResponseBatch
		if err := proto.Unmarshal(data, &b); err != nil {
			t.Errorf("undecodable ResponseBatch: %v", err)
			return false
		}
		got := false
		for _, r := range b.GetResponses() {
			for _, m := range r.GetOutgoingMessages().GetMessages() {
				if !put(c.msgs, m, quit) {
					return false
				}
				got = true
			}
		}
		if !got {
			return put(c.resp, &b, quit)
		}
		return true
	}, func() { close(c.msgs) })
}

func (c *binClient) next(t *testing.T) *pb.OutgoingMessage {
	t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			t.Fatal("binary connection closed while waiting for a message")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
	}
	return nil
}

func (c *binClient) send(t *testing.T, b *pb.RequestBatch) {
	t.Helper()
	data, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := wsutil.WriteClientBinary(c.conn, data); err != nil {
		t.Fatal(err)
	}
}

func (c *binClient) waitClosed(t *testing.T) wsutil.ClosedError {
	t.Helper()
	return awaitClose(t, c.done, c.failed)
}

func incoming(body string, expiry uint32, rs ...*pb.Receiver) *pb.Request {
	return &pb.Request{Command: &pb.Request_IncomingMessages{IncomingMessages: &pb.IncomingMessagesRequest{
		Messages: []*pb.IncomingMessage{{Receivers: rs, Body: body, Expiry: expiry, Type: "application_test"}},
	}}}
}

func private(id channel.ID) *pb.Receiver { return &pb.Receiver{Id: id[:], IsPrivate: true} }

func (ts *testServer) public(id channel.ID) *pb.Receiver {
	return &pb.Receiver{Id: id[:], Signature: ts.signer.Sign([]byte("public:" + id.String()))}
}

// postBatch sends a RequestBatch to path and returns status and body.
func (ts *testServer) postBatch(t *testing.T, path string, b *pb.RequestBatch) (int, []byte) {
	t.Helper()
	data, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return ts.postRaw(t, path, data)
}

func (ts *testServer) postRaw(t *testing.T, path string, data []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(ts.URL+path, "", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestBinarySubscriberGetsResponseBatches(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	bin := ts.dialBinary(t, ts.signer.SignChannel(ch), "")
	text := ts.dial(t, ts.subQuery([]channel.ID{ch}, ""))
	ts.waitSubscribers(t, ch, 2)

	before := time.Now().Unix()
	ts.publish(t, `{"module_id":"app","command":"x","params":{}}`, ch)
	m := bin.next(t)
	f := text.next(t)
	if hex.EncodeToString(m.GetId()) != f.MID || len(m.GetId()) != 13 {
		t.Fatalf("binary id %x, text mid %s", m.GetId(), f.MID)
	}
	if m.GetBody() != `{"module_id":"app","command":"x","params":{}}` || m.GetExpiry() != 86400 {
		t.Fatalf("message %v", m)
	}
	if int64(m.GetCreated()) < before || int64(m.GetCreated()) > time.Now().Unix() {
		t.Fatalf("created %d", m.GetCreated())
	}
	if m.GetSender() == nil || m.GetSender().GetType() != pb.SenderType_BACKEND {
		t.Fatalf("sender %v: clients drop messages without one", m.GetSender())
	}
}

func TestBackendProtobufBatchLikePHP(t *testing.T) {
	ts := newTestServer(t, nil)
	a, b := newChannel(t), newChannel(t)
	ca := ts.dialBinary(t, ts.signer.SignChannel(a), "")
	cb := ts.dial(t, ts.subQuery([]channel.ID{b}, ""))
	ts.waitSubscribers(t, a, 1)
	ts.waitSubscribers(t, b, 1)

	// One Request per batch, 100 messages, private 16-byte receivers, as the
	// PHP module sends them.
	req := &pb.IncomingMessagesRequest{}
	for i := range 100 {
		req.Messages = append(req.Messages, &pb.IncomingMessage{
			Receivers: []*pb.Receiver{private(a), private(b)},
			Body:      fmt.Sprintf(`{"module_id":"im","command":"message","params":{"n":%d},"extra":{"revision_web":19}}`, i),
			Expiry:    86400, Type: "im_message",
		})
	}
	code, body := ts.postBatch(t, "/pub/?binaryMode=true&hostname=portal.example", &pb.RequestBatch{Requests: []*pb.Request{{Command: &pb.Request_IncomingMessages{IncomingMessages: req}}}})
	if code != 200 || len(body) != 0 {
		t.Fatalf("publish: %d %q", code, body)
	}
	for i := range 100 {
		want := fmt.Sprintf(`"n":%d}`, i)
		if m := ca.next(t); !strings.Contains(m.GetBody(), want) {
			t.Fatalf("binary message %d = %s", i, m.GetBody())
		}
		if f := cb.next(t); !strings.Contains(string(f.Text), want) {
			t.Fatalf("text message %d = %s", i, f.Text)
		}
	}
}

func TestBackendProtobufErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	a := newChannel(t)
	many := func(n int) []*pb.Receiver {
		var rs []*pb.Receiver
		for range n {
			rs = append(rs, private(newChannel(t)))
		}
		return rs
	}
	msgs := func(n int) *pb.Request {
		r := &pb.IncomingMessagesRequest{}
		for range n {
			r.Messages = append(r.Messages, &pb.IncomingMessage{Receivers: []*pb.Receiver{private(a)}, Body: `{}`, Expiry: 60})
		}
		return &pb.Request{Command: &pb.Request_IncomingMessages{IncomingMessages: r}}
	}
	ok := incoming(`{"ok":1}`, 60, private(a))
	cases := []struct {
		name string
		raw  []byte
		reqs []*pb.Request
		want string
	}{
		{"undecodable", []byte{0x0a, 0xff, 0x01}, nil, "4013: Wrong Request Data."},
		{"empty batch", []byte{}, nil, "4013: Wrong Request Data."},
		{"no command", nil, []*pb.Request{ok, {}}, "4015: Wrong Request Command."},
		{"registration", nil, []*pb.Request{{Command: &pb.Request_Registration{Registration: &pb.RegisterRequest{}}}}, "4015: Wrong Request Command."},
		{"too many messages", nil, []*pb.Request{msgs(101)}, "4016: Request exceeded the maximum number of messages."},
		{"no receivers", nil, []*pb.Request{ok, incoming(`{}`, 60)}, "4017: No channels found."},
		{"too many receivers", nil, []*pb.Request{incoming(`{}`, 60, many(101)...)}, "4018: Request exceeded the maximum number of channels."},
		{"short id", nil, []*pb.Request{incoming(`{}`, 60, &pb.Receiver{Id: a[:15], IsPrivate: true})}, "4019: Request has an invalid channel id."},
		{"empty channel stats", nil, []*pb.Request{{Command: &pb.Request_ChannelStats{ChannelStats: &pb.ChannelStatsRequest{}}}}, "4017: No channels found."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.raw
			if tc.reqs != nil {
				var err error
				if data, err = proto.Marshal(&pb.RequestBatch{Requests: tc.reqs}); err != nil {
					t.Fatal(err)
				}
			}
			code, body := ts.postRaw(t, "/pub/?binaryMode=true", data)
			if code != 400 || string(body) != tc.want {
				t.Fatalf("got %d %q, want 400 %q", code, body, tc.want)
			}
		})
	}
	// A bad string field (invalid UTF-8 body) cannot be decoded.
	good, err := proto.Marshal(&pb.RequestBatch{Requests: []*pb.Request{incoming(`{"x":"AB"}`, 60, private(a))}})
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(good, []byte("AB"), []byte{0xcd, 0xcd}, 1)
	if code, body := ts.postRaw(t, "/pub/?binaryMode=true", bad); code != 400 || string(body) != "4013: Wrong Request Data." {
		t.Fatalf("invalid UTF-8: %d %q", code, body)
	}
	// Nothing of the refused batches was published, even their good requests.
	if s := ts.broker.Stats(); s.Messages != 0 {
		t.Fatalf("%d messages stored by refused batches", s.Messages)
	}
}

func TestStatsRequestsAnswerInOrder(t *testing.T) {
	ts := newTestServer(t, nil)
	priv, pub, off := newChannel(t), newChannel(t), newChannel(t)
	ts.dialBinary(t, ts.signer.SignPrivate(priv, pub), "")
	ts.waitSubscribers(t, priv, 1)
	ts.waitWebSockets(t, 1)
	stats := &pb.Request{Command: &pb.Request_ChannelStats{ChannelStats: &pb.ChannelStatsRequest{Channels: []*pb.ChannelId{
		{Id: priv[:], IsPrivate: true}, {Id: off[:], IsPrivate: true}, {Id: pub[:]},
	}}}}
	server := &pb.Request{Command: &pb.Request_ServerStats{ServerStats: &pb.ServerStatsRequest{}}}
	code, body := ts.postBatch(t, "/pub/?binaryMode=true", &pb.RequestBatch{Requests: []*pb.Request{stats, incoming(`{}`, 0, private(off)), server}})
	if code != 200 {
		t.Fatalf("%d %q", code, body)
	}
	var b pb.ResponseBatch
	if err := proto.Unmarshal(body, &b); err != nil || len(b.GetResponses()) != 2 {
		t.Fatalf("reply %x: %v", body, err)
	}
	cs := b.GetResponses()[0].GetChannelStats().GetChannels()
	if len(cs) != 3 || !cs[0].GetIsOnline() || cs[1].GetIsOnline() || !cs[2].GetIsOnline() || !bytes.Equal(cs[1].GetId(), off[:]) || !cs[0].GetIsPrivate() || cs[2].GetIsPrivate() {
		t.Fatalf("channel stats %v", cs)
	}
	if js := b.GetResponses()[1].GetServerStats().GetJson(); !strings.Contains(js, `"websockets":1`) {
		t.Fatalf("server stats %q", js)
	}
	// The text and binary forms of GET /pub/ agree.
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/pub/?CHANNEL_ID="+priv.String()+"/"+off.String(), nil)
	_, text := do(t, req)
	if text != `{"infos":[{"channel":"`+priv.String()+`","subscribers":1}]}` {
		t.Fatalf("text stats %s", text)
	}
	resp, err := http.Get(ts.URL + "/pub/?binaryMode=true&CHANNEL_ID=" + priv.String() + "/" + off.String())
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := proto.Unmarshal(data, &b); err != nil || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("binary stats: %v", err)
	}
	cs = b.GetResponses()[0].GetChannelStats().GetChannels()
	if len(cs) != 2 || !cs[0].GetIsOnline() || cs[1].GetIsOnline() {
		t.Fatalf("binary GET stats %v", cs)
	}
}

func TestPublicAliasAndPublicIDsCannotSubscribe(t *testing.T) {
	ts := newTestServer(t, nil)
	priv, pub := newChannel(t), newChannel(t)
	c := ts.dialBinary(t, ts.signer.SignPrivate(priv, pub), "")
	ts.waitSubscribers(t, priv, 1)
	// A backend message to the public id reaches the private channel.
	if code, body := ts.postBatch(t, "/pub/?binaryMode=true", &pb.RequestBatch{Requests: []*pb.Request{incoming(`{"via":"public"}`, 60, &pb.Receiver{Id: pub[:]})}}); code != 200 {
		t.Fatalf("%d %q", code, body)
	}
	if m := c.next(t); m.GetBody() != `{"via":"public"}` {
		t.Fatalf("got %v", m)
	}
	// The public id with its public signature is not a subscription.
	bad := ts.dialBinary(t, ts.signer.SignPublic(pub), "")
	if ce := bad.waitClosed(t); ce.Code != 4010 || ce.Reason != "4010: Wrong Channel Id." {
		t.Fatalf("closed with %d %q", ce.Code, ce.Reason)
	}
}

func TestClientPublishing(t *testing.T) {
	ts := newTestServer(t, nil)
	privA, pubA, privB, pubB := newChannel(t), newChannel(t), newChannel(t), newChannel(t)
	a := ts.dialBinary(t, ts.signer.SignPrivate(privA, pubA), "")
	b := ts.dialBinary(t, ts.signer.SignPrivate(privB, pubB), "")
	bText := ts.dial(t, "CHANNEL_ID="+url.QueryEscape(ts.signer.SignPrivate(privB, pubB)))
	ts.waitSubscribers(t, privA, 1)
	ts.waitSubscribers(t, privB, 2)

	a.send(t, &pb.RequestBatch{Requests: []*pb.Request{incoming(`{"module_id":"chat","command":"hi","params":{}}`, 0, ts.public(pubB))}})
	m := b.next(t)
	if m.GetBody() != `{"module_id":"chat","command":"hi","params":{}}` || m.GetSender().GetType() != pb.SenderType_CLIENT || !bytes.Equal(m.GetSender().GetId(), pubA[:]) || m.GetExpiry() != 0 {
		t.Fatalf("client message %v", m)
	}
	if f := bText.next(t); string(f.Text) != `{"module_id":"chat","command":"hi","params":{}}` || f.Channel != privB.String() {
		t.Fatalf("text copy %+v", f)
	}
	// Expiry 0: delivered live; this broker has no retention window for it.
	if s := ts.broker.Stats(); s.Messages != 0 {
		t.Fatalf("live-only client message stored (%d)", s.Messages)
	}

	// Channel stats for a public id, answered on the socket.
	a.send(t, &pb.RequestBatch{Requests: []*pb.Request{{Command: &pb.Request_ChannelStats{ChannelStats: &pb.ChannelStatsRequest{
		Channels: []*pb.ChannelId{{Id: pubB[:], Signature: ts.signer.Sign([]byte("public:" + pubB.String()))}},
	}}}}})
	select {
	case r := <-a.resp:
		if cs := r.GetResponses()[0].GetChannelStats().GetChannels(); len(cs) != 1 || !cs[0].GetIsOnline() {
			t.Fatalf("stats %v", cs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no channel stats reply")
	}

	// Over HTTP, as long-polling clients publish.
	data, _ := proto.Marshal(&pb.RequestBatch{Requests: []*pb.Request{incoming(`{"over":"http"}`, 30, ts.public(pubB))}})
	q := "/pubweb/?CHANNEL_ID=" + url.QueryEscape(ts.signer.SignPrivate(privA, pubA)+"/"+ts.signer.SignChannel(newChannel(t)))
	if code, body := ts.postRaw(t, q, data); code != 200 || len(body) != 0 {
		t.Fatalf("pubweb: %d %q", code, body)
	}
	if m := b.next(t); m.GetBody() != `{"over":"http"}` || !bytes.Equal(m.GetSender().GetId(), pubA[:]) || m.GetExpiry() != 30 {
		t.Fatalf("pubweb message %v", m)
	}
}

func TestClientPublishingErrors(t *testing.T) {
	ts := newTestServer(t, nil)
	privA, pubA, privB, pubB := newChannel(t), newChannel(t), newChannel(t), newChannel(t)
	withPublic := ts.signer.SignPrivate(privA, pubA)
	wrongSig := ts.public(pubB)
	wrongSig.Signature[0] ^= 1
	serverStats := &pb.Request{Command: &pb.Request_ServerStats{ServerStats: &pb.ServerStatsRequest{}}}
	cases := []struct {
		name    string
		channel string
		req     *pb.Request
		code    int
		text    string
	}{
		{"no public id", ts.signer.SignChannel(privA), incoming(`{}`, 0, ts.public(pubB)), 4012, "Public Channel Id is Required."},
		{"private receiver", withPublic, incoming(`{}`, 0, private(privB)), 4020, "Private channel is not allowed."},
		{"bad signature", withPublic, incoming(`{}`, 0, wrongSig), 4021, "Channel has an invalid signature."},
		{"no signature", withPublic, incoming(`{}`, 0, &pb.Receiver{Id: pubB[:]}), 4021, "Channel has an invalid signature."},
		{"server stats", withPublic, serverStats, 4014, "Request command is not allowed."},
		{"no receivers", withPublic, incoming(`{}`, 0), 4017, "No channels found."},
		// RequestBatch bytes 0a 02 12 00; Push server 2.x's empty list is
		// truthy, so it answers 4017, never 4030.
		{"empty channel stats", withPublic, &pb.Request{Command: &pb.Request_ChannelStats{ChannelStats: &pb.ChannelStatsRequest{}}}, 4017, "No channels found."},
	}
	if data, _ := proto.Marshal(&pb.RequestBatch{Requests: []*pb.Request{cases[len(cases)-1].req}}); string(data) != "\x0a\x02\x12\x00" {
		t.Fatalf("empty channel stats encodes as % x", data)
	}
	for _, tc := range cases {
		t.Run("ws/"+tc.name, func(t *testing.T) {
			c := ts.dialBinary(t, tc.channel, "")
			c.send(t, &pb.RequestBatch{Requests: []*pb.Request{tc.req}})
			ce := c.waitClosed(t)
			if int(ce.Code) != tc.code || ce.Reason != fmt.Sprintf("%d: %s", tc.code, tc.text) {
				t.Fatalf("closed with %d %q", ce.Code, ce.Reason)
			}
		})
		t.Run("http/"+tc.name, func(t *testing.T) {
			code, body := ts.postBatch(t, "/pubweb/?CHANNEL_ID="+url.QueryEscape(tc.channel), &pb.RequestBatch{Requests: []*pb.Request{tc.req}})
			if code != 400 || string(body) != fmt.Sprintf("%d: %s", tc.code, tc.text) {
				t.Fatalf("got %d %q", code, body)
			}
		})
	}
	// Push server 2.x drops ids without a valid signature and then has no
	// public id to publish as.
	for _, unsigned := range []string{pubA.String(), privA.String() + ":" + pubA.String(), flipLast(withPublic)} {
		code, body := ts.postBatch(t, "/pubweb/?CHANNEL_ID="+url.QueryEscape(unsigned), &pb.RequestBatch{Requests: []*pb.Request{incoming(`{}`, 0, ts.public(pubB))}})
		if code != 400 || string(body) != "4012: Public Channel Id is Required." {
			t.Fatalf("unsigned pubweb %s: %d %q", unsigned, code, body)
		}
	}
}

// flipLast changes the last hex digit of s.
func flipLast(s string) string {
	last := byte('0')
	if s[len(s)-1] == '0' {
		last = '1'
	}
	return s[:len(s)-1] + string(last)
}

func TestBinaryLongPollAndRecovery(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	for i := range 3 {
		ts.publish(t, fmt.Sprintf(`{"n":%d}`, i), ch)
	}
	hist, _ := ts.broker.History(context.Background(), []channel.ID{ch}, zeroID(), ts.rt.opt.Replay)
	resp, err := http.Get(ts.URL + "/sub/?CHANNEL_ID=" + url.QueryEscape(ts.signer.SignChannel(ch)) + "&binaryMode=true&mid=" + hist[0].Msg.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var b pb.ResponseBatch
	if err := proto.Unmarshal(data, &b); err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("long poll: %d %v", resp.StatusCode, err)
	}
	ms := b.GetResponses()[0].GetOutgoingMessages().GetMessages()
	if len(b.GetResponses()) != 1 || len(ms) != 2 || ms[0].GetBody() != `{"n":1}` || ms[1].GetBody() != `{"n":2}` {
		t.Fatalf("replay %v", ms)
	}
	// And over WebSocket: replay first, then live.
	c := ts.dialBinary(t, ts.signer.SignChannel(ch), "mid="+hex.EncodeToString(ms[0].GetId()))
	if m := c.next(t); m.GetBody() != `{"n":2}` {
		t.Fatalf("ws replay %v", m)
	}
	ts.publish(t, `{"n":3}`, ch)
	if m := c.next(t); m.GetBody() != `{"n":3}` {
		t.Fatalf("ws live %v", m)
	}
}

func TestOldestConnectionOverTheLimitIsClosed(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.MaxConnPerChannel = 2 })
	priv, pub := newChannel(t), newChannel(t)
	id := ts.signer.SignPrivate(priv, pub)
	first := ts.dialBinary(t, id, "")
	ts.waitSubscribers(t, priv, 1)
	second := ts.dialBinary(t, id, "")
	ts.waitSubscribers(t, priv, 2)
	ts.dialBinary(t, id, "")
	if ce := first.waitClosed(t); ce.Code != 4029 || ce.Reason != "4029: Too many connections" {
		t.Fatalf("oldest closed with %d %q", ce.Code, ce.Reason)
	}
	ts.waitSubscribers(t, priv, 2)
	ts.publish(t, `{"still":2}`, priv)
	if m := second.next(t); m.GetBody() != `{"still":2}` {
		t.Fatalf("second connection got %v", m)
	}
	// Channels without a public id are not limited.
	shared := newChannel(t)
	for range 3 {
		ts.dialBinary(t, ts.signer.SignChannel(shared), "")
	}
	ts.waitSubscribers(t, shared, 3)
}
