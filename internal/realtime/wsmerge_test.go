package realtime

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/wire"
)

// msgClient is a WebSocket subscriber that keeps each server message's
// frames together: one message is one socket write of the server's.
type msgClient struct {
	msgs   chan []string
	closed chan wsutil.ClosedError
	errs   chan error
}

func (ts *testServer) dialMessages(t *testing.T, ch channel.ID) *msgClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, r, err := dialRaw(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+ts.subQuery([]channel.ID{ch}, ""))
	if err != nil {
		t.Fatal(err)
	}
	c := &msgClient{msgs: make(chan []string, 100), closed: make(chan wsutil.ClosedError, 1), errs: make(chan error, 1)}
	readerCleanup(t, conn, func(quit <-chan struct{}) {
		readServer(conn, r, quit, c.closed, c.errs, func(data []byte, _ ws.OpCode) bool {
			fs, err := wire.ParseTextFrames(data)
			if err != nil {
				return put(c.errs, err, quit)
			}
			texts := make([]string, len(fs))
			for i, f := range fs {
				texts[i] = string(f.Text)
			}
			return put(c.msgs, texts, quit)
		}, nil)
	})
	ts.waitSubscribers(t, ch, 1)
	ts.waitWebSockets(t, 1)
	return c
}

// next returns the texts of the next server message.
func (c *msgClient) next(t *testing.T) []string {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case err := <-c.errs:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
	}
	return nil
}

// publishAll publishes bodies in order and waits until the hub has handed
// them to the sessions.
func (ts *testServer) publishAll(t *testing.T, ch channel.ID, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		ts.publish(t, b, ch)
	}
	if err := ts.broker.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// fakeMergeClock makes the server's merger read a clock the test moves.
// It runs before any connection, so the merger has not read its clock yet.
func fakeMergeClock(ts *testServer) *atomic.Int64 {
	var clock atomic.Int64
	clock.Store(int64(time.Hour))
	ts.rt.writers.merge.now = func() time.Duration { return time.Duration(clock.Load()) }
	return &clock
}

func bodies(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf(`{"i":%d}`, i))
	}
	return out
}

func sameTexts(got, want []string) bool {
	return strings.Join(got, "\n") == strings.Join(want, "\n")
}

// With no merge delay there is no merger, and nothing is ever held.
func TestWriteMergeOffHoldsNothing(t *testing.T) {
	ts := newTestServer(t, nil)
	if ts.rt.writers.merge != nil {
		t.Fatal("a merger runs without a merge delay")
	}
	ch := newChannel(t)
	c := ts.dialMessages(t, ch)
	want := bodies(0, 50)
	ts.publishAll(t, ch, want...)
	var got []string
	for len(got) < len(want) {
		got = append(got, c.next(t)...)
	}
	if !sameTexts(got, want) {
		t.Fatalf("got %q", got)
	}
	if n := ts.rt.Metrics().WritesHeld; n != 0 {
		t.Fatalf("%d writes held", n)
	}
}

// With a merge delay the first message after a quiet spell goes out at once;
// what follows within the delay waits, and leaves whole and in order in one
// write when the delay runs out.
func TestWriteMergeHoldsWithinDelay(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.WriteMergeDelay = time.Minute })
	clock := fakeMergeClock(ts)
	ch := newChannel(t)
	c := ts.dialMessages(t, ch)

	// Nothing was written yet: not held. The merger is never flushed here,
	// and the clock stands still, so the message can only have gone at once.
	ts.publishAll(t, ch, `{"i":0}`)
	if got := c.next(t); !sameTexts(got, bodies(0, 1)) {
		t.Fatalf("first message: %q", got)
	}
	ts.waitWriterIdle(t)

	// Within the delay of that write: held, however many come.
	ts.publishAll(t, ch, bodies(1, 20)...)
	if n := ts.rt.Metrics().WritesHeld; n != 1 {
		t.Fatalf("%d writes held, want 1", n)
	}
	if n := ts.onlySession(t).queued(); n != 19 {
		t.Fatalf("%d deliveries queued while held, want 19", n)
	}
	ts.rt.writers.merge.flush() // the delay runs out
	if got := c.next(t); !sameTexts(got, bodies(1, 20)) {
		t.Fatalf("merged write: %q", got)
	}

	// A quiet spell longer than the delay: the next message goes at once.
	ts.waitWriterIdle(t)
	clock.Add(int64(2 * time.Minute))
	ts.publishAll(t, ch, `{"i":20}`)
	if got := c.next(t); !sameTexts(got, bodies(20, 21)) {
		t.Fatalf("after a quiet spell: %q", got)
	}
	if n := ts.rt.Metrics().WritesHeld; n != 1 {
		t.Fatalf("%d writes held, want still 1", n)
	}
}

// A busy connection's writer, finding more queued right after a write, is
// held too, and its timer, not the test, lets it go.
func TestWriteMergeReleasesOnTime(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.WriteMergeDelay = time.Millisecond })
	ch := newChannel(t)
	c := ts.dialMessages(t, ch)
	want := bodies(0, 200)
	ts.publishAll(t, ch, want...)
	var got []string
	writes := 0
	for len(got) < len(want) {
		got = append(got, c.next(t)...)
		writes++
	}
	if !sameTexts(got, want) {
		t.Fatalf("got %q", got)
	}
	t.Logf("%d messages in %d writes, %d held", len(want), writes, ts.rt.Metrics().WritesHeld)
}

// A shutdown does not wait for the delay: the held messages, then
// server_restart and the close frame, go out at once.
func TestWriteMergeShutdownSendsHeld(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.WriteMergeDelay = time.Minute })
	fakeMergeClock(ts)
	ch := newChannel(t)
	c := ts.dialMessages(t, ch)
	ts.publishAll(t, ch, `{"i":0}`)
	c.next(t)
	ts.waitWriterIdle(t)
	ts.publishAll(t, ch, bodies(1, 4)...)
	if n := ts.rt.Metrics().WritesHeld; n != 1 {
		t.Fatalf("%d writes held, want 1", n)
	}
	if err := ts.rt.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := append(bodies(1, 4), serverRestartBody)
	var got []string
	for len(got) < len(want) {
		got = append(got, c.next(t)...)
	}
	if !sameTexts(got, want) {
		t.Fatalf("got %q", got)
	}
	if ce := awaitClose(t, c.closed, c.errs); ce.Code != ws.StatusGoingAway {
		t.Fatalf("closed with %d", ce.Code)
	}
}

// A connection cut while held is released harmlessly, and the server stops.
func TestWriteMergeCutWhileHeld(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.WriteMergeDelay = time.Minute })
	fakeMergeClock(ts)
	ch := newChannel(t)
	c := ts.dialMessages(t, ch)
	ts.publishAll(t, ch, `{"i":0}`)
	c.next(t)
	ts.waitWriterIdle(t)
	ts.publishAll(t, ch, bodies(1, 4)...)
	sess := ts.onlySession(t)
	sess.kill("test")
	ts.waitSubscribers(t, ch, 0)
	ts.rt.writers.merge.flush()
	waitIdle(t, sess)
	if err := ts.rt.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// onlySession returns the server's one session.
func (ts *testServer) onlySession(t *testing.T) *session {
	t.Helper()
	ts.rt.sessMu.Lock()
	defer ts.rt.sessMu.Unlock()
	if len(ts.rt.sessions) != 1 {
		t.Fatalf("%d sessions, want 1", len(ts.rt.sessions))
	}
	for m := range ts.rt.sessions {
		if s, ok := m.(*session); ok {
			return s
		}
	}
	t.Fatal("the session is not a *session")
	return nil
}

// waitWriterIdle waits until the one session's writer has found its queue
// empty and stopped, its last write noted.
func (ts *testServer) waitWriterIdle(t *testing.T) {
	t.Helper()
	waitIdle(t, ts.onlySession(t))
}

// waitIdle waits until sess's writer has stopped.
func waitIdle(t *testing.T, sess *session) {
	t.Helper()
	waitFor(t, "the writer to stop", func() bool {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		return !sess.sending
	})
}

// queued is how many deliveries wait in the session's queue.
func (s *session) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}
