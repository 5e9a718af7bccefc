package realtime

import (
	"bufio"
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/wire"
)

// pollConn is one keep-alive connection that polls, as a browser's does.
type pollConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialPolls(t *testing.T, ts *testServer) *pollConn {
	t.Helper()
	conn, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &pollConn{conn: conn, r: bufio.NewReader(conn)}
}

// send writes requests as they are, several at once for a pipeline.
func (c *pollConn) send(t *testing.T, reqs ...string) {
	t.Helper()
	if _, err := io.WriteString(c.conn, strings.Join(reqs, "")); err != nil {
		t.Fatal(err)
	}
}

// read reads the next answer on the connection.
func (c *pollConn) read(t *testing.T) (*http.Response, string) {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func getRequest(target string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: test\r\n\r\n"
}

// poll sends one poll and reads its answer.
func (c *pollConn) poll(t *testing.T, target string) (*http.Response, string) {
	t.Helper()
	c.send(t, getRequest(target))
	return c.read(t)
}

// frames parses a 200 answer's messages.
func frames(t *testing.T, resp *http.Response, body string) []wire.TextFrame {
	t.Helper()
	fs, err := wire.ParseTextFrames([]byte(body))
	if resp.StatusCode != http.StatusOK || err != nil || len(fs) == 0 {
		t.Fatalf("poll answered %d %q (%v)", resp.StatusCode, body, err)
	}
	return fs
}

// readFrames reads the next answer, a 200 with messages.
func (c *pollConn) readFrames(t *testing.T) []wire.TextFrame {
	t.Helper()
	resp, body := c.read(t)
	return frames(t, resp, body)
}

// pollFrames polls, and wants a 200 with messages.
func (c *pollConn) pollFrames(t *testing.T, target string) []wire.TextFrame {
	t.Helper()
	resp, body := c.poll(t, target)
	return frames(t, resp, body)
}

// keptSession waits until the server holds no poll and exactly one
// session, and returns it.
func (ts *testServer) keptSession(t *testing.T) member {
	t.Helper()
	var kept member
	waitFor(t, "one session kept between polls", func() bool {
		if ts.rt.Stat().Pollings != 0 {
			return false
		}
		ts.rt.sessMu.Lock()
		defer ts.rt.sessMu.Unlock()
		if len(ts.rt.sessions) != 1 {
			return false
		}
		for m := range ts.rt.sessions {
			kept = m
		}
		return true
	})
	return kept
}

// A connection's polls are served by one session: what is published while
// no poll is held waits in it, and comes with the next poll, from where
// the last answer left the client, exactly once.
func TestKeptPollServesTheConnectionsPolls(t *testing.T) {
	ts := newTestServerWith(t, 1000, true, nil)
	ch := newChannel(t)
	target := "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	c := dialPolls(t, ts)

	c.send(t, getRequest(target+"&mid="+zeroID().String()))
	ts.waitSubscribers(t, ch, 1)
	ts.publish(t, `{"n":1}`, ch)
	fs := c.readFrames(t)
	if len(fs) != 1 || string(fs[0].Text) != `{"n":1}` {
		t.Fatalf("first poll got %+v", fs)
	}
	kept := ts.keptSession(t)

	// Published between two polls: the next poll gets it at once.
	ts.publish(t, `{"n":2}`, ch)
	ts.publish(t, `{"n":3}`, ch)
	if err := ts.broker.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	fs = c.pollFrames(t, target+"&mid="+fs[0].MID)
	if len(fs) != 2 || string(fs[0].Text) != `{"n":2}` || string(fs[1].Text) != `{"n":3}` {
		t.Fatalf("second poll got %+v", fs)
	}
	if ts.keptSession(t) != kept {
		t.Fatal("the second poll built a session of its own")
	}

	// Held, then answered live.
	c.send(t, getRequest(target+"&mid="+fs[1].MID))
	waitFor(t, "the third poll held", func() bool { return ts.rt.Stat().Pollings == 1 })
	ts.publish(t, `{"n":4}`, ch)
	resp, body := c.read(t)
	if fs = frames(t, resp, body); len(fs) != 1 || string(fs[0].Text) != `{"n":4}` {
		t.Fatalf("third poll got %+v", fs)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Expose-Headers") != "Last-Message-Id" {
		t.Fatalf("answer headers %v", resp.Header)
	}
	if ts.keptSession(t) != kept {
		t.Fatal("the third poll built a session of its own")
	}

	// The session ends with its connection.
	_ = c.conn.Close()
	ts.waitSubscribers(t, ch, 0)
	waitFor(t, "no session", func() bool { return len(ts.rt.liveSessions(func(*session) bool { return true })) == 0 })
}

// A poll that asks for something else than the kept session serves (an
// older mid, another channel list) is served by a new session, as if none
// were kept.
func TestKeptPollRebuiltForAnotherPoll(t *testing.T) {
	ts := newTestServerWith(t, 1000, true, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	ch, other := newChannel(t), newChannel(t)
	target := "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	ts.publish(t, `{"n":1}`, ch)
	ts.publish(t, `{"n":2}`, ch)
	c := dialPolls(t, ts)
	fs := c.pollFrames(t, target+"&mid="+zeroID().String())
	if len(fs) != 2 {
		t.Fatalf("replay got %+v", fs)
	}
	kept := ts.keptSession(t)

	// From the start again: history, not the kept queue.
	fs = c.pollFrames(t, target+"&mid="+zeroID().String())
	if len(fs) != 2 || string(fs[0].Text) != `{"n":1}` {
		t.Fatalf("second replay got %+v", fs)
	}
	again := ts.keptSession(t)
	if again == kept {
		t.Fatal("a poll from another mid was served by the kept session")
	}
	// Another channel list: its own session, and only its messages.
	ts.publish(t, `{"other":1}`, other)
	fs = c.pollFrames(t, "/sub/?"+ts.subQuery([]channel.ID{other}, "mid="+zeroID().String()))
	if len(fs) != 1 || string(fs[0].Text) != `{"other":1}` {
		t.Fatalf("other channel got %+v", fs)
	}
	if ts.keptSession(t) == again {
		t.Fatal("a poll of other channels was served by the kept session")
	}
	ts.waitSubscribers(t, ch, 0)

	// No mid: told where history ends, as always.
	resp, body := c.poll(t, target)
	checkNotModified(t, resp, body, lastIDOf(t, ts, ch))
}

func lastIDOf(t *testing.T, ts *testServer, ch channel.ID) string {
	t.Helper()
	id, ok, err := ts.broker.LastID(t.Context(), []channel.ID{ch})
	if err != nil || !ok {
		t.Fatalf("last id: %v %v", ok, err)
	}
	return id.String()
}

// Other requests on the connection between two polls are served as usual
// and leave the kept session to the next poll. Polls pipelined behind one
// another are answered in order.
func TestKeptPollAroundOtherRequestsAndPipelined(t *testing.T) {
	ts := newTestServerWith(t, 1000, true, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	ch := newChannel(t)
	target := "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	ts.publish(t, `{"n":1}`, ch)
	c := dialPolls(t, ts)
	fs := c.pollFrames(t, target+"&mid="+zeroID().String())
	kept := ts.keptSession(t)

	c.send(t, "OPTIONS "+target+" HTTP/1.1\r\nHost: test\r\nOrigin: https://portal.example\r\n\r\n")
	if resp, _ := c.read(t); resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Methods") != "GET, OPTIONS" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := c.poll(t, "/nowhere"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown route: %d", resp.StatusCode)
	}

	// Two polls at once, both up to date: two 304s echoing the mid, the
	// second served by the session the first kept.
	mid := fs[0].MID
	c.send(t, getRequest(target+"&mid="+mid), getRequest(target+"&mid="+mid))
	for range 2 {
		resp, body := c.read(t)
		checkNotModified(t, resp, body, mid)
	}
	if ts.keptSession(t) != kept {
		t.Fatal("polls after other requests built a session of their own")
	}
}

// A shutdown tells a kept session's client server_restart with its next
// poll, and an idle connection's kept session ends when the connection is
// closed: the drain waits for neither longer.
func TestKeptPollAndShutdown(t *testing.T) {
	for _, pollAgain := range []bool{true, false} {
		ts := newTestServerWith(t, 1000, true, nil)
		ch := newChannel(t)
		target := "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
		ts.publish(t, `{"n":1}`, ch)
		c := dialPolls(t, ts)
		fs := c.pollFrames(t, target+"&mid="+zeroID().String())
		sess := ts.keptSession(t).(*session)

		done := make(chan error, 1)
		go func() { done <- ts.rt.Shutdown(context.Background()) }()
		waitFor(t, "the kept session told", func() bool {
			sess.mu.Lock()
			defer sess.mu.Unlock()
			return sess.restarting
		})
		if pollAgain {
			fs = c.pollFrames(t, target+"&mid="+fs[0].MID)
			if len(fs) != 1 || string(fs[0].Text) != serverRestartBody {
				t.Fatalf("poll during shutdown got %+v", fs)
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := ts.Config.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
		if err := <-done; err != nil {
			t.Fatalf("pollAgain %v: %v", pollAgain, err)
		}
	}
}

// A kept session evicted while no poll was held (a newer connection over
// the channel's limit) is not reused: the next poll starts afresh.
func TestKeptPollEvictedIsNotReused(t *testing.T) {
	ts := newTestServerWith(t, 1000, true, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	ch := newChannel(t)
	target := "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	ts.publish(t, `{"n":1}`, ch)
	c := dialPolls(t, ts)
	fs := c.pollFrames(t, target+"&mid="+zeroID().String())
	sess := ts.keptSession(t).(*session)
	sess.evict(errTooManyConnections)

	resp, body := c.poll(t, target+"&mid="+fs[0].MID)
	checkNotModified(t, resp, body, fs[0].MID)
	if ts.keptSession(t) == member(sess) {
		t.Fatal("the evicted session was reused")
	}
}

// A kept session that no poll takes over in time ends with its connection
// still open (a client gone elsewhere with it idle); the next poll on it
// starts afresh.
func TestKeptPollEndsWhenNotPolledAgain(t *testing.T) {
	ts := newTestServerWith(t, 1000, true, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	ts.rt.keptIdle = 20 * time.Millisecond
	ch := newChannel(t)
	target := "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	ts.publish(t, `{"n":1}`, ch)
	c := dialPolls(t, ts)
	fs := c.pollFrames(t, target+"&mid="+zeroID().String())
	// Unsubscribed with the connection open.
	ts.waitSubscribers(t, ch, 0)
	waitFor(t, "no session", func() bool { return len(ts.rt.liveSessions(func(*session) bool { return true })) == 0 })

	ts.publish(t, `{"n":2}`, ch)
	fs = c.pollFrames(t, target+"&mid="+fs[0].MID)
	if len(fs) != 1 || string(fs[0].Text) != `{"n":2}` {
		t.Fatalf("poll after the kept session ended got %+v", fs)
	}
}

// A connection that turns into a WebSocket after polling (hijacked) ends
// its kept session: the WebSocket is the only one left.
func TestKeptPollEndsWhenConnectionBecomesWebSocket(t *testing.T) {
	ts := newTestServerWith(t, 1000, true, nil)
	ch := newChannel(t)
	target := "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	ts.publish(t, `{"n":1}`, ch)
	c := dialPolls(t, ts)
	c.pollFrames(t, target+"&mid="+zeroID().String())
	kept := ts.keptSession(t)

	c.send(t, "GET "+target+" HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	_ = c.conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	ts.waitWebSockets(t, 1)
	if now := ts.keptSession(t); now == kept || !now.(*session).t.streams() {
		t.Fatal("the kept session outlived its connection's upgrade")
	}
}

// A client's own mid never holds back what the kept session queues: one
// from the future (a bogus client, a history reset) must not silence the
// connection, as it does not silence a new session.
func TestKeptPollFutureMidDoesNotSilence(t *testing.T) {
	ts := newTestServerWith(t, 1000, true, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	ch := newChannel(t)
	target := "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	const future = "99999999990000000000000001"
	c := dialPolls(t, ts)
	resp, body := c.poll(t, target+"&mid="+future)
	checkNotModified(t, resp, body, future)
	kept := ts.keptSession(t)

	ts.publish(t, `{"n":1}`, ch)
	if err := ts.broker.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	fs := c.pollFrames(t, target+"&mid="+future)
	if len(fs) != 1 || string(fs[0].Text) != `{"n":1}` {
		t.Fatalf("poll after a future mid got %+v", fs)
	}
	if ts.keptSession(t) != kept {
		t.Fatal("the poll built a session of its own")
	}
}

func TestSameQueryButMid(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"", "", true},
		{"CHANNEL_ID=a&revision=19", "CHANNEL_ID=a&revision=19", true},
		{"CHANNEL_ID=a&revision=19&mid=1", "CHANNEL_ID=a&revision=19", true},
		{"mid=1&CHANNEL_ID=a", "CHANNEL_ID=a&mid=2", true},
		{"mid&CHANNEL_ID=a", "CHANNEL_ID=a", true},
		{"CHANNEL_ID=a", "CHANNEL_ID=b", false},
		{"CHANNEL_ID=a&revision=19", "revision=19&CHANNEL_ID=a", false},
		{"CHANNEL_ID=a", "CHANNEL_ID=a&token=x", false},
		{"CHANNEL_ID=a&", "CHANNEL_ID=a", true},
		{"CHANNEL_ID=a&&x", "CHANNEL_ID=a&x", false},
		{"m%69d=1&CHANNEL_ID=a", "CHANNEL_ID=a", false},
		{"mide=1", "", false},
	} {
		if got := sameQueryButMid(tc.a, tc.b); got != tc.same {
			t.Errorf("sameQueryButMid(%q, %q) = %v", tc.a, tc.b, got)
		}
		if got := sameQueryButMid(tc.b, tc.a); got != tc.same {
			t.Errorf("sameQueryButMid(%q, %q) = %v", tc.b, tc.a, got)
		}
	}
}

// FuzzSameQueryButMid checks the rule that lets a poll take over a kept
// session, on queries as clients (or anyone) send them: two queries it
// calls the same mean the same to the server once mid is left out, and
// the rule is reflexive and symmetric.
func FuzzSameQueryButMid(f *testing.F) {
	f.Add("CHANNEL_ID=a%2Fb&revision=19&mid=1", "CHANNEL_ID=a%2Fb&revision=19&mid=2")
	f.Add("mid&CHANNEL_ID=a", "CHANNEL_ID=a&mid=")
	f.Add("m%69d=1&x=1", "x=1")
	f.Add("a=1;b=2&mid=3", "a=1;b=2")
	f.Fuzz(func(t *testing.T, a, b string) {
		if !sameQueryButMid(a, a) {
			t.Fatalf("%q is not the same as itself", a)
		}
		same := sameQueryButMid(a, b)
		if same != sameQueryButMid(b, a) {
			t.Fatalf("not symmetric: %q %q", a, b)
		}
		if !same {
			return
		}
		qa, _ := url.ParseQuery(a)
		qb, _ := url.ParseQuery(b)
		delete(qa, "mid")
		delete(qb, "mid")
		if !maps.EqualFunc(qa, qb, slices.Equal) {
			t.Fatalf("%q and %q called the same, but read %v and %v", a, b, qa, qb)
		}
	})
}
