package realtime

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

// store publishes n numbered messages to chans through the broker, which is
// quicker than /pub/ for a backlog, and returns them.
func (ts *testServer) store(t *testing.T, n int, chans ...channel.ID) []*message.Message {
	t.Helper()
	// The embedded broker hands messages to the hub after storing them: a
	// connection opened right after Publish returns could still get them
	// live besides in its replay. A live listener that has seen the last
	// one proves the hand-over is done.
	probe := ts.dial(t, ts.subQuery(chans, ""))
	defer probe.conn.Close()
	out := make([]*message.Message, n)
	for i := range n {
		m := &message.Message{Body: []byte(fmt.Sprintf(`{"n":%d}`, i)), Expiry: 3600,
			Sender: message.Sender{Type: message.SenderBackend}}
		for _, c := range chans {
			m.Receivers = append(m.Receivers, message.Receiver{ID: c})
		}
		if err := ts.broker.Publish(t.Context(), m); err != nil {
			t.Fatal(err)
		}
		out[i] = m
	}
	if n > 0 {
		last := out[n-1].ID.String()
		for probe.next(t).MID != last {
		}
	}
	return out
}

func pollFrames(t *testing.T, u string) []wire.TextFrame {
	t.Helper()
	resp, body := longPoll(t, u)
	fs, err := wire.ParseTextFrames([]byte(body))
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("poll: %d %q %v", resp.StatusCode, body, err)
	}
	return fs
}

func frameN(t *testing.T, f wire.TextFrame) int {
	t.Helper()
	var body struct{ N int }
	if err := json.Unmarshal(f.Text, &body); err != nil {
		t.Fatalf("frame %s: %v", f.Text, err)
	}
	return body.N
}

// A long poll more than one answer behind gets the oldest messages first
// and continues from its last mid until it is caught up (issue 12 #1: it
// got the newest 100 and never the rest).
func TestLongPollRecoveryFarBehindGetsEveryMessage(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	ch := newChannel(t)
	marker := ts.store(t, 1, ch)[0]
	ts.store(t, 250, ch)
	base := ts.URL + "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	mid, next := marker.ID.String(), 0
	for answers := 0; next < 250; answers++ {
		if answers == 3 {
			t.Fatalf("after 3 answers only %d of 250 messages", next)
		}
		fs := pollFrames(t, base+"&mid="+mid)
		if len(fs) > 100 {
			t.Fatalf("one answer held %d messages, over the cap of 100", len(fs))
		}
		for _, f := range fs {
			if n := frameN(t, f); n != next {
				t.Fatalf("got message %d, want %d", n, next)
			}
			next++
			mid = f.MID
		}
	}
	resp, body := longPoll(t, base+"&mid="+mid)
	checkNotModified(t, resp, body, mid)
}

// A WebSocket reconnecting far behind gets everything after its mid in
// order, then live messages, none twice, even with publishes racing the
// replay.
func TestWebSocketRecoveryFarBehindGetsEveryMessage(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	marker := ts.store(t, 1, ch)[0]
	ts.store(t, 500, ch)
	c := ts.dial(t, ts.subQuery([]channel.ID{ch}, "mid="+marker.ID.String()))
	for i := range 20 {
		ts.publish(t, fmt.Sprintf(`{"n":%d}`, 500+i), ch)
	}
	ts.publish(t, `{"n":-1}`, ch) // the sentinel
	for want := 0; want < 520; want++ {
		if n := frameN(t, c.next(t)); n != want {
			t.Fatalf("got message %d, want %d", n, want)
		}
	}
	if n := frameN(t, c.next(t)); n != -1 {
		t.Fatalf("after the last message got %d, want the sentinel", n)
	}
}

// A recovery larger than one connection replays ends the WebSocket once
// the replay is written; the client's reconnect with its last mid gets the
// rest.
func TestWebSocketRecoveryContinuesOnTheNextConnection(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.Replay.PerChannel, o.Replay.Total, o.ReplayPerConnection = 10, 10, 25 })
	ch := newChannel(t)
	marker := ts.store(t, 1, ch)[0]
	ts.store(t, 60, ch)
	mid, next := marker.ID.String(), 0
	var c *wsClient
	for conns := 0; next < 60; conns++ {
		if conns == 3 {
			t.Fatalf("after 3 connections only %d of 60 messages", next)
		}
		c = ts.dial(t, ts.subQuery([]channel.ID{ch}, "mid="+mid))
		// The connection that catches up stays open: read until then.
		for f := range c.frames {
			if n := frameN(t, f); n != next {
				t.Fatalf("connection %d: got message %d, want %d", conns, n, next)
			}
			next++
			mid = f.MID
			if next == 60 {
				break
			}
		}
		if next < 60 {
			if ce := c.waitClosed(t); ce.Code != 1001 || ce.Reason != reasonReplayContinues {
				t.Fatalf("connection %d closed with %d %q after message %d", conns, ce.Code, ce.Reason, next)
			}
		}
	}
	// Caught up: live messages follow on the last connection.
	ts.publish(t, `{"n":60}`, ch)
	if n := frameN(t, c.next(t)); n != 60 {
		t.Fatalf("live after the replay: got %d, want 60", n)
	}
}

// A message to two channels of one connection is listed once in a replay
// (issue 12 #2), and still comes once per channel live.
func TestReplayListsAMessageToTwoChannelsOnce(t *testing.T) {
	ts := newTestServer(t, nil)
	a, b := newChannel(t), newChannel(t)
	marker := ts.store(t, 1, a)[0]
	ts.publish(t, `{"n":1}`, a, b)
	ts.publish(t, `{"n":2}`, b)
	fs := pollFrames(t, ts.URL+"/sub/?"+ts.subQuery([]channel.ID{a, b}, "mid="+marker.ID.String()))
	if len(fs) != 2 || frameN(t, fs[0]) != 1 || frameN(t, fs[1]) != 2 {
		t.Fatalf("replay %d frames: %v", len(fs), fs)
	}
	c := ts.dial(t, ts.subQuery([]channel.ID{a, b}, "mid="+marker.ID.String()))
	for _, want := range []int{1, 2} {
		if n := frameN(t, c.next(t)); n != want {
			t.Fatalf("websocket replay: got %d, want %d", n, want)
		}
	}
	ts.publish(t, `{"n":3}`, a, b)
	ts.publish(t, `{"n":4}`, a)
	for _, want := range []int{3, 3, 4} {
		if n := frameN(t, c.next(t)); n != want {
			t.Fatalf("live: got %d, want %d", n, want)
		}
	}
}

// A client whose mid is older than what history still holds is told with
// the config_expire command, placed where the gap is and carrying a mid past
// it, and then gets what is held; from that mid on it is not told again.
func TestRecoveryPastTrimmedHistorySignals(t *testing.T) {
	ts := newTestServerKeeping(t, 5, func(o *Options) { o.PollTimeout = 50 * time.Millisecond })
	ch := newChannel(t)
	marker := ts.store(t, 1, ch)[0]
	ms := ts.store(t, 8, ch) // keeps ms[3:]; ms[2] is the newest dropped
	check := func(where string, fs []wire.TextFrame) {
		t.Helper()
		if len(fs) != 6 || !strings.Contains(string(fs[0].Text), `"command":"config_expire"`) ||
			fs[0].MID != ms[2].ID.String() || fs[0].Channel != ch.String() {
			t.Fatalf("%s: %d frames, first %+v; want config_expire with mid %s, then 5 messages", where, len(fs), fs[0], ms[2].ID)
		}
		for i, f := range fs[1:] {
			if f.MID != ms[3+i].ID.String() {
				t.Fatalf("%s: frame %d is %s, want %s", where, i+1, f.MID, ms[3+i].ID)
			}
		}
	}
	base := ts.URL + "/sub/?" + ts.subQuery([]channel.ID{ch}, "")
	check("long poll", pollFrames(t, base+"&mid="+marker.ID.String()))
	c := ts.dial(t, ts.subQuery([]channel.ID{ch}, "mid="+marker.ID.String()))
	var got []wire.TextFrame
	for range 6 {
		got = append(got, c.next(t))
	}
	check("websocket", got)
	// From the command's mid: what is held, and no command.
	fs := pollFrames(t, base+"&mid="+ms[2].ID.String())
	if len(fs) != 5 || fs[0].MID != ms[3].ID.String() {
		t.Fatalf("from the command's mid: %v", fs)
	}
	last := ms[7].ID.String()
	resp, body := longPoll(t, base+"&mid="+last)
	checkNotModified(t, resp, body, last)
}

// Protocol version 5 gets the same command, as an incoming.message, before
// what is held.
func TestRecoveryPastTrimmedHistorySignalsJSONRPC(t *testing.T) {
	ts := newTestServerKeeping(t, 5, nil)
	shared := newChannel(t)
	marker := ts.store(t, 1, shared)[0]
	ms := ts.store(t, 8, shared)
	c := ts.dialRPC(t, "token="+ts.tokenFor(5, shared)+"&jsonRpc=true&mid="+marker.ID.String())
	first := c.next(t)
	if first.Mid != ms[2].ID.String() || !strings.Contains(string(first.Body), `"command":"config_expire"`) {
		t.Fatalf("first message %s %s; want config_expire with mid %s", first.Mid, first.Body, ms[2].ID)
	}
	for _, m := range ms[3:] {
		if got := c.next(t); got.Mid != m.ID.String() {
			t.Fatalf("got %s, want %s", got.Mid, m.ID)
		}
	}
}
