package realtime

import (
	"bufio"
	"fmt"
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
	for m := range ts.keptSessions(t, 1) {
		return m
	}
	return nil
}

// keptSessions waits until the server holds no poll and exactly n
// sessions, and returns them.
func (ts *testServer) keptSessions(t *testing.T, n int) map[member]struct{} {
	t.Helper()
	var kept map[member]struct{}
	waitFor(t, fmt.Sprintf("%d sessions kept between polls", n), func() bool {
		if ts.rt.Stat().Pollings != 0 {
			return false
		}
		ts.rt.sessMu.Lock()
		defer ts.rt.sessMu.Unlock()
		if len(ts.rt.sessions) != n {
			return false
		}
		kept = maps.Clone(ts.rt.sessions)
		return true
	})
	return kept
}

// A client's polls are served by one session: what is published while no
// poll is held waits in it, and comes with the next poll, from where the
// last answer left the client, exactly once, whichever connection the
// poll comes on and whatever tag and time it carries.
func TestKeptPollServesTheClientsPolls(t *testing.T) {
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

	// The next poll on another connection, with the tag and time of the
	// last message as the official text clients send them.
	_ = c.conn.Close()
	other := dialPolls(t, ts)
	ts.publish(t, `{"n":5}`, ch)
	fs = other.pollFrames(t, target+"&mid="+fs[0].MID+"&tag="+fs[0].Tag+"&time="+url.QueryEscape(fs[0].Time))
	if len(fs) != 1 || string(fs[0].Text) != `{"n":5}` {
		t.Fatalf("poll on another connection got %+v", fs)
	}
	if ts.keptSession(t) != kept {
		t.Fatal("the poll on another connection built a session of its own")
	}
}

// A poll that asks for something else than the kept session serves (an
// older mid, another channel list) is served by a new session, as if none
// were kept; the kept one waits on for its own client.
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
	ts.keptSessions(t, 1)

	// From the start again: history, not the kept queue.
	fs = c.pollFrames(t, target+"&mid="+zeroID().String())
	if len(fs) != 2 || string(fs[0].Text) != `{"n":1}` {
		t.Fatalf("second replay got %+v", fs)
	}
	ts.keptSessions(t, 2)
	// Another channel list: its own session, and only its messages.
	ts.publish(t, `{"other":1}`, other)
	fs = c.pollFrames(t, "/sub/?"+ts.subQuery([]channel.ID{other}, "mid="+zeroID().String()))
	if len(fs) != 1 || string(fs[0].Text) != `{"other":1}` {
		t.Fatalf("other channel got %+v", fs)
	}
	ts.keptSessions(t, 3)

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

// A shutdown ends the kept sessions at once, as clients between two polls
// were never waited for: the drain does not wait for their next polls,
// which are refused as any new poll while draining.
func TestKeptPollAndShutdown(t *testing.T) {
	ts := newTestServerWith(t, 1000, true, nil)
	ch := newChannel(t)
	target := "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	ts.publish(t, `{"n":1}`, ch)
	c := dialPolls(t, ts)
	fs := c.pollFrames(t, target+"&mid="+zeroID().String())
	ts.keptSession(t)

	if err := ts.rt.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	ts.waitSubscribers(t, ch, 0)
	resp, body := c.poll(t, target+"&mid="+fs[0].MID)
	if resp.StatusCode != http.StatusServiceUnavailable || body != "Server is restarting." {
		t.Fatalf("poll during shutdown: %d %q", resp.StatusCode, body)
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

// A kept session that no poll takes over in time ends (a client gone with
// its connection still open); a later poll starts afresh.
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

func TestQueryForKeeping(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"", "", true},
		{"CHANNEL_ID=a&revision=19", "CHANNEL_ID=a&revision=19", true},
		{"CHANNEL_ID=a&revision=19&mid=1", "CHANNEL_ID=a&revision=19", true},
		{"mid=1&CHANNEL_ID=a", "CHANNEL_ID=a&mid=2", true},
		{"mid&CHANNEL_ID=a", "CHANNEL_ID=a", true},
		{"CHANNEL_ID=a&mid=1&tag=5&time=Sat%2C%2005%20Dec", "CHANNEL_ID=a&mid=2&tag=7&time=Sun", true},
		{"CHANNEL_ID=a", "CHANNEL_ID=b", false},
		{"CHANNEL_ID=a&revision=19", "revision=19&CHANNEL_ID=a", false},
		{"CHANNEL_ID=a", "CHANNEL_ID=a&token=x", false},
		{"CHANNEL_ID=a&", "CHANNEL_ID=a", true},
		{"CHANNEL_ID=a&&x", "CHANNEL_ID=a&x", true},
		{"m%69d=1&CHANNEL_ID=a", "CHANNEL_ID=a", false},
		{"mide=1", "", false},
		{"CHANNEL_ID=a&clientId=1", "CHANNEL_ID=a&clientId=2", false},
	} {
		if got := queryForKeeping(tc.a) == queryForKeeping(tc.b); got != tc.same {
			t.Errorf("%q and %q kept alike: %v (%q, %q)", tc.a, tc.b, got, queryForKeeping(tc.a), queryForKeeping(tc.b))
		}
	}
}

// FuzzQueryForKeeping checks the rule that lets a poll take over a kept
// session, on queries as clients (or anyone) send them: two queries it
// keeps alike mean the same to the server once the parameters it never
// reads are left out.
func FuzzQueryForKeeping(f *testing.F) {
	f.Add("CHANNEL_ID=a%2Fb&revision=19&mid=1", "CHANNEL_ID=a%2Fb&revision=19&mid=2&tag=3")
	f.Add("mid&CHANNEL_ID=a", "CHANNEL_ID=a&mid=&time=x")
	f.Add("m%69d=1&x=1", "x=1")
	f.Add("a=1;b=2&mid=3", "a=1;b=2")
	f.Fuzz(func(t *testing.T, a, b string) {
		ka := queryForKeeping(a)
		if queryForKeeping(ka) != ka {
			t.Fatalf("%q: kept as %q, then as %q", a, ka, queryForKeeping(ka))
		}
		if ka != queryForKeeping(b) {
			return
		}
		qa, _ := url.ParseQuery(a)
		qb, _ := url.ParseQuery(b)
		for _, n := range pollIgnored {
			delete(qa, n)
			delete(qb, n)
		}
		if !maps.EqualFunc(qa, qb, slices.Equal) {
			t.Fatalf("%q and %q kept alike, but read %v and %v", a, b, qa, qb)
		}
	})
}
