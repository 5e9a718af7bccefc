package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

func TestWebSocketReceivesTextFrames(t *testing.T) {
	ts := newTestServer(t, nil)
	priv, shared := newChannel(t), newChannel(t)
	c := ts.dial(t, ts.subQuery([]channel.ID{priv, shared}, ""))
	ts.waitSubscribers(t, shared, 1)

	ts.publish(t, `{"module_id":"app","command":"one","params":{}}`, priv)
	f := c.next(t)
	if f.Channel != priv.String() || string(f.Text) != `{"module_id":"app","command":"one","params":{}}` {
		t.Fatalf("frame = %+v", f)
	}
	if len(f.MID) != 26 || f.ID == 0 || !strings.HasSuffix(f.MID, fmt.Sprintf("%d", f.ID)) {
		t.Fatalf("frame ids: id=%d mid=%q", f.ID, f.MID)
	}
	if _, err := time.Parse(http.TimeFormat, f.Time); err != nil || len(f.Tag) != 3 {
		t.Fatalf("frame time %q tag %q", f.Time, f.Tag)
	}

	// One publish to both channels reaches the connection once per channel.
	ts.publish(t, `{"n":2}`, priv, shared)
	a, b := c.next(t), c.next(t)
	if a.MID != b.MID || a.Channel == b.Channel {
		t.Fatalf("multi-channel publish gave %+v and %+v", a, b)
	}
	// And no third copy: the next frame is the sentinel.
	ts.publish(t, sentinel, priv)
	if f := c.next(t); string(f.Text) != sentinel {
		t.Fatalf("unexpected extra frame %+v", f)
	}
}

func TestWebSocketAlsoOnOtherPrefixes(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	c := dialURL(t, "ws"+strings.TrimPrefix(ts.URL, "http")+"/bitrix/subws/?"+ts.subQuery([]channel.ID{ch}, ""))
	ts.waitSubscribers(t, ch, 1)
	ts.publish(t, `{}`, ch)
	if f := c.next(t); f.Channel != ch.String() {
		t.Fatalf("frame = %+v", f)
	}
}

func TestWebSocketWrongChannelCloses4010(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	good := ts.signer.SignChannel(ch)
	flipped := "0"
	if strings.HasSuffix(good, "0") {
		flipped = "1"
	}
	cases := map[string]string{
		"none":          "",
		"unsigned":      ch.String(),
		"bad signature": good[:len(good)-1] + flipped,
		"public id":     ts.signer.SignPublic(ch),
		"one bad":       good + "/" + newChannel(t).String() + ".00",
	}
	for name, list := range cases {
		t.Run(name, func(t *testing.T) {
			c := ts.dial(t, "CHANNEL_ID="+list)
			ce := c.waitClosed(t)
			if ce.Code != 4010 || ce.Reason != "4010: Wrong Channel Id." {
				t.Fatalf("closed with %d %q", ce.Code, ce.Reason)
			}
		})
	}
}

func TestFormatJSON(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	c := dialURL(t, "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+ts.subQuery([]channel.ID{ch}, "format=json"))
	_ = c
	// The WS reader in the helper parses NGINX frames; read JSON with long polling.
	ts.publish(t, `{"a":1}`, ch)
	resp, body := longPoll(t, ts.URL+"/sub/?"+ts.subQuery([]channel.ID{ch}, "format=json&mid=00000000000000000000000000"))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var arr []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &arr); err != nil || len(arr) != 1 {
		t.Fatalf("body %q: %v", body, err)
	}
	if string(arr[0]["text"]) != `{"a":1}` {
		t.Fatalf("text = %s", arr[0]["text"])
	}
}

func TestLongPollDeliversLive(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	done := startLongPoll(ts.URL + "/sub/?" + ts.subQuery([]channel.ID{ch}, ""))
	ts.waitSubscribers(t, ch, 1)
	ts.publish(t, `{"live":true}`, ch)
	resp, body := awaitLongPoll(t, done)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	fs, err := wire.ParseTextFrames([]byte(body))
	if err != nil || len(fs) != 1 || string(fs[0].Text) != `{"live":true}` {
		t.Fatalf("body %q: %v", body, err)
	}
	// The handler counts the poll until it returns, just after the answer.
	waitFor(t, "the finished poll to be uncounted", func() bool { return ts.rt.Stat().Pollings == 0 })
}

func TestLongPollHistoryAndTimeout(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	ch := newChannel(t)
	base := ts.URL + "/sub/?" + ts.subQuery([]channel.ID{ch}, "")

	// Nothing stored, no mid: 304 with an empty Last-Message-Id.
	resp, body := longPoll(t, base)
	checkNotModified(t, resp, body, "")

	ts.publish(t, `{"n":1}`, ch)
	ts.publish(t, `{"n":2}`, ch)
	// Fanned out before the next poll subscribes: a publish answers once
	// stored, and a poll that subscribed before the fan-out would rightly
	// be sent them live.
	if err := ts.broker.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	// No mid: the client learns where history ends without receiving it.
	resp, body = longPoll(t, base)
	last, _, _ := ts.broker.LastID(t.Context(), []channel.ID{ch})
	checkNotModified(t, resp, body, last.String())

	// A mid before both: both at once.
	first, _ := ts.broker.History(t.Context(), []channel.ID{ch}, zeroID(), ts.rt.opt.Replay)
	resp, body = longPoll(t, base+"&mid="+zeroID().String())
	fs, err := wire.ParseTextFrames([]byte(body))
	if resp.StatusCode != 200 || err != nil || len(fs) != 2 || fs[0].MID != first[0].Msg.ID.String() {
		t.Fatalf("replay: %d %q %v", resp.StatusCode, body, err)
	}
	// Up to date: 304 echoing the mid.
	resp, body = longPoll(t, base+"&mid="+fs[1].MID)
	checkNotModified(t, resp, body, fs[1].MID)
	// A malformed mid is ignored, as by the reference servers.
	resp, body = longPoll(t, base+"&mid=12ab")
	checkNotModified(t, resp, body, last.String())
}

func checkNotModified(t *testing.T, resp *http.Response, body, lastID string) {
	t.Helper()
	h := resp.Header
	if resp.StatusCode != http.StatusNotModified || body != "" {
		t.Fatalf("status %d body %q, want 304 empty", resp.StatusCode, body)
	}
	if got, ok := h["Last-Message-Id"]; !ok || got[0] != lastID {
		t.Fatalf("Last-Message-Id = %q (present %v), want %q", h.Get("Last-Message-Id"), ok, lastID)
	}
	if h.Get("Expires") != "Thu, 01 Jan 1973 11:11:01 GMT" ||
		h.Get("Access-Control-Expose-Headers") != "Last-Message-Id" ||
		h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("304 headers: %v", h)
	}
}

func TestLongPollWrongChannel(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, q := range []string{"", "CHANNEL_ID=" + newChannel(t).String(), "CHANNEL_ID=zz"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/sub/?"+q, nil)
		code, body := do(t, req)
		if code != 400 || body != "4010: Wrong Channel Id." {
			t.Fatalf("%q: %d %q", q, code, body)
		}
	}
}

func TestOptionsAndUnknownRoutes(t *testing.T) {
	ts := newTestServer(t, nil)
	req, _ := http.NewRequest(http.MethodOptions, ts.URL+"/sub/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 200 || h.Get("Access-Control-Allow-Methods") != "GET, OPTIONS" ||
		h.Get("Access-Control-Allow-Headers") != "If-Modified-Since, If-None-Match" ||
		h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Content-Type") != "text/plain" {
		t.Fatalf("OPTIONS: %d %v", resp.StatusCode, h)
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/nothing/here", nil)
	if code, body := do(t, req); code != 404 || body != "" {
		t.Fatalf("unknown route: %d %q", code, body)
	}
	req, _ = http.NewRequest(http.MethodDelete, ts.URL+"/pub/", nil)
	if code, _ := do(t, req); code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE /pub/: %d", code)
	}
}

// TestRecoveryRacingPublishes reconnects a subscriber again and again with
// its last mid while a publisher runs, and checks that across all its
// connections it saw every message exactly once and in order.
func TestRecoveryRacingPublishes(t *testing.T) {
	// The replay limits are raised: this test is about gaps and duplicates
	// at the seam between replay and live, not about truncation.
	ts := newTestServer(t, func(o *Options) { o.Replay.PerChannel, o.Replay.Total = 1000, 1000 })
	ch := newChannel(t)
	const total = 300
	start, stop := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	// A failure below ends the test early: the publisher must stop and be
	// gone before then, or its own report would panic the test binary.
	defer wg.Wait()
	defer close(stop)
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		for i := range total {
			select {
			case <-stop:
				return
			default:
			}
			if code, text := ts.publishRaw(t, fmt.Sprintf(`{"n":%d}`, i), nil, ch); code != http.StatusOK {
				t.Errorf("publish %d: %d %q", i, code, text)
				return
			}
		}
	}()

	var got []int
	mid := zeroID().String()
	seen := map[string]bool{}
	close(start)
	for len(got) < total {
		c := ts.dial(t, ts.subQuery([]channel.ID{ch}, "mid="+mid))
		// Read a few frames, then drop the connection mid-stream.
		for range 7 {
			f := c.next(t)
			if seen[f.MID] {
				t.Fatalf("message %s delivered twice", f.MID)
			}
			seen[f.MID] = true
			var body struct{ N int }
			if err := json.Unmarshal(f.Text, &body); err != nil {
				t.Fatal(err)
			}
			got = append(got, body.N)
			mid = f.MID
			if len(got) == total {
				// Nothing after the last one on this connection either.
				ts.publish(t, sentinel, ch)
				if f := c.next(t); string(f.Text) != sentinel {
					t.Fatalf("after all %d messages, got %+v instead of the sentinel", total, f)
				}
				break
			}
		}
		c.conn.Close()
	}
	for i, n := range got {
		if n != i {
			t.Fatalf("message %d arrived as number %d: gap or reorder", n, i)
		}
	}
}

func TestSlowConsumerIsDroppedOthersUnaffected(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.SendQueue = 8 })
	ch := newChannel(t)
	q := ts.subQuery([]channel.ID{ch}, "")
	fast := ts.dial(t, q)
	// The slow client never reads: once the kernel buffers fill, its queue
	// overflows.
	ctx := t.Context()
	slow, _, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+q)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	ts.waitSubscribers(t, ch, 2)

	body := `{"pad":"` + strings.Repeat("x", 64<<10) + `"}`
	const n = 200 // 13 MB: more than socket buffers hold
	// In lock step with the fast client, so only the slow one can fall behind.
	for range n {
		ts.publish(t, body, ch)
		fast.next(t)
	}
	ts.waitSubscribers(t, ch, 1)
	ts.waitWebSockets(t, 1)
}

func TestDeadConnectionsAreDropped(t *testing.T) {
	// The ping loop itself, fast: a peer that never answers is dropped.
	ts := newTestServer(t, func(o *Options) { o.PingInterval = 20 * time.Millisecond })
	ch := newChannel(t)
	q := ts.subQuery([]channel.ID{ch}, "")
	dead, _, _, err := ws.Dial(t.Context(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+q)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	ts.waitSubscribers(t, ch, 1)
	ts.waitSubscribers(t, ch, 0)

	// A peer that answers stays, however slowly it answers: the rounds
	// wait for its pong, where a short ticker would race the machine's load.
	ts = newTestServer(t, nil) // PingInterval beyond the test
	q = ts.subQuery([]channel.ID{ch}, "")
	// This client answers pings (wsutil does) and stays.
	alive := ts.dial(t, q)
	// This one never reads, so never answers.
	dead, _, _, err = ws.Dial(t.Context(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+q)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	ts.waitSubscribers(t, ch, 2)
	aliveSess := ts.wsSession(t, alive.conn)
	ts.wsSession(t, dead) // subscribed before its handshake: wait until it has a socket to ping
	for round := range 10 {
		ts.pingRound(false)
		if round == 1 {
			ts.waitSubscribers(t, ch, 1) // two rounds without an answer
		}
		waitAnswered(t, aliveSess)
	}
	ts.publish(t, `{"still":"here"}`, ch)
	if f := alive.next(t); string(f.Text) != `{"still":"here"}` {
		t.Fatalf("frame %+v", f)
	}
	if n := ts.hub.Subscribers(ch); n != 1 {
		t.Fatalf("%d subscribers after the pings, want the live one", n)
	}
}

func TestShutdownSendsServerRestart(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	c := ts.dial(t, ts.subQuery([]channel.ID{ch}, ""))
	ts.waitSubscribers(t, ch, 1)
	lp := startLongPoll(ts.URL + "/sub/?" + ts.subQuery([]channel.ID{ch}, ""))
	ts.waitSubscribers(t, ch, 2)
	if err := ts.rt.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	f := c.next(t)
	if string(f.Text) != serverRestartBody {
		t.Fatalf("first frame after shutdown = %s", f.Text)
	}
	if ce := c.waitClosed(t); ce.Code != ws.StatusGoingAway {
		t.Fatalf("closed with %d", ce.Code)
	}
	_, body := awaitLongPoll(t, lp)
	fs, err := wire.ParseTextFrames([]byte(body))
	if err != nil || len(fs) != 1 || string(fs[0].Text) != serverRestartBody {
		t.Fatalf("long poll got %v %v", fs, err)
	}
	// New subscribers are turned away while draining.
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/sub/?"+ts.subQuery([]channel.ID{ch}, ""), nil)
	if code, _ := do(t, req); code != http.StatusServiceUnavailable {
		t.Fatalf("poll during shutdown: %d", code)
	}
}

// A client that never answers the server's close frame still gets it, and
// the server closes the socket after its closing-handshake timeout.
func TestCloseHandshakeWithSilentPeer(t *testing.T) {
	ts := newTestServer(t, nil)
	conn, br, _, err := ws.Dial(t.Context(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?CHANNEL_ID="+newChannel(t).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	h, err := ws.ReadHeader(r)
	if err != nil || h.OpCode != ws.OpClose || h.Length > 125 {
		t.Fatalf("first frame %v, %v; want close", h, err)
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatal(err)
	}
	code, reason := ws.ParseCloseFrameData(payload)
	if code != 4010 || reason != "4010: Wrong Channel Id." {
		t.Fatalf("close %d %q", code, reason)
	}
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after an unanswered close the server should hang up; read gave %v", err)
	}
}

// TestLateBrokerDeliveryOfKnownMessageIsNotRepeated: a client that got a
// message from history on one connection and resumes from its mid on the
// next may be attached before the broker has finished handing that message
// out live (the broker stores before it fans out). The new connection must
// not send it again.
func TestLateBrokerDeliveryOfKnownMessageIsNotRepeated(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	ts.publish(t, `{"n":1}`, ch)
	hist, err := ts.broker.History(context.Background(), []channel.ID{ch}, message.ID{}, broker.HistoryLimit{PerChannel: 10, Total: 10})
	if err != nil || len(hist) != 1 {
		t.Fatalf("history = %v, %v", hist, err)
	}
	known := hist[0].Msg
	c := ts.dial(t, ts.subQuery([]channel.ID{ch}, "&mid="+known.ID.String()))
	ts.waitSubscribers(t, ch, 1)
	ts.hub.Deliver(known) // the broker's late live hand-out of the same message
	ts.publish(t, `{"n":2}`, ch)
	if f := c.next(t); string(f.Text) != `{"n":2}` {
		t.Fatalf("first frame after resuming from %s = %s; want the new message only", known.ID, f.Text)
	}
}
