//go:build linux

package realtime

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// eventReaders counts the server's WebSockets read from the poller.
func (ts *testServer) eventReaders() (polled, total int) {
	ts.rt.sessMu.Lock()
	defer ts.rt.sessMu.Unlock()
	for m := range ts.rt.sessions {
		c, ok := m.(*session).t.(*wsConn)
		if !ok {
			continue
		}
		total++
		c.connMu.Lock()
		if c.ev != nil {
			polled++
		}
		c.connMu.Unlock()
	}
	return polled, total
}

// writeSlowly writes data a few bytes at a time, pausing between writes so
// that each reaches the server in a segment of its own: the server must
// put frames split across reads back together.
func writeSlowly(t *testing.T, conn net.Conn, data []byte, step int) {
	t.Helper()
	for len(data) > 0 {
		n := min(step, len(data))
		if _, err := conn.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
		time.Sleep(2 * time.Millisecond)
	}
}

// readControl reads one control frame (at most 125 bytes of payload).
func readControl(t *testing.T, r io.Reader) (ws.Frame, error) {
	t.Helper()
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 125 {
		t.Fatalf("frame of %d bytes, want a control frame", h.Length)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: p}, nil
}

func maskedFrame(t *testing.T, f ws.Frame) []byte {
	t.Helper()
	var b strings.Builder
	if err := ws.WriteFrame(&b, ws.MaskFrameInPlace(f)); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

func TestEventReaderManyConnections(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	q := ts.subQuery([]channel.ID{ch}, "")
	const n = 300
	clients := make([]*wsClient, n)
	for i := range clients {
		clients[i] = ts.dial(t, q)
	}
	ts.waitSubscribers(t, ch, n)
	ts.waitWebSockets(t, n)
	waitFor(t, "every websocket read from the poller", func() bool { polled, total := ts.eventReaders(); return polled == n && total == n })
	ts.publish(t, `{"n":1}`, ch)
	ts.publish(t, `{"n":2}`, ch)
	for i, c := range clients {
		for _, want := range []string{`{"n":1}`, `{"n":2}`} {
			if f := c.next(t); string(f.Text) != want {
				t.Fatalf("client %d got %s, want %s", i, f.Text, want)
			}
		}
	}
	// Half of them leave; the server notices through the poller alone.
	for _, c := range clients[:n/2] {
		_ = c.conn.Close()
	}
	ts.waitWebSockets(t, n-n/2)
	ts.waitSubscribers(t, ch, n-n/2)
	ts.publish(t, `{"n":3}`, ch)
	for _, c := range clients[n/2:] {
		if f := c.next(t); string(f.Text) != `{"n":3}` {
			t.Fatalf("got %s", f.Text)
		}
	}
}

// A ping split into single bytes is answered, and so are pings sent back to
// back in one write (two frames in one wake-up).
func TestEventReaderSplitAndCoalescedControlFrames(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	conn, br, _, err := ws.Dial(t.Context(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+ts.subQuery([]channel.ID{ch}, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	ts.waitWebSockets(t, 1)
	// Counted once the handshake is written; handed to the poller just after.
	waitFor(t, "the websocket read from the poller", func() bool { polled, _ := ts.eventReaders(); return polled == 1 })
	readPong := func(want string) {
		t.Helper()
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		f, err := readControl(t, r)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode != ws.OpPong || string(f.Payload) != want {
			t.Fatalf("got %v %q, want pong %q", f.Header.OpCode, f.Payload, want)
		}
	}
	writeSlowly(t, conn, maskedFrame(t, ws.NewPingFrame([]byte("split"))), 1)
	readPong("split")
	both := append(maskedFrame(t, ws.NewPingFrame([]byte("one"))), maskedFrame(t, ws.NewPingFrame([]byte("two")))...)
	if _, err := conn.Write(both); err != nil {
		t.Fatal(err)
	}
	readPong("one")
	readPong("two")
	// A client close is echoed and the connection ends.
	if _, err := conn.Write(maskedFrame(t, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))); err != nil {
		t.Fatal(err)
	}
	f, err := readControl(t, r)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("got %v, %v; want the close echoed", f.Header, err)
	}
	ts.waitWebSockets(t, 0)
	ts.waitSubscribers(t, ch, 0)
}

// A protobuf request split into fragments, each written a few bytes at a
// time, is put together and answered.
func TestEventReaderFragmentedSplitRequest(t *testing.T) {
	ts := newTestServer(t, nil)
	priv, pub := newChannel(t), newChannel(t)
	c := ts.dialBinary(t, ts.signer.SignPrivate(priv, pub), "")
	ts.waitWebSockets(t, 1)
	waitFor(t, "the websocket read from the poller", func() bool { polled, _ := ts.eventReaders(); return polled == 1 })
	req, err := proto.Marshal(&pb.RequestBatch{Requests: []*pb.Request{
		{Command: &pb.Request_ChannelStats{ChannelStats: &pb.ChannelStatsRequest{Channels: []*pb.ChannelId{{Id: pub[:], Signature: ts.public(pub).GetSignature()}}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	half := len(req) / 2
	first := ws.NewFrame(ws.OpBinary, false, append([]byte(nil), req[:half]...))
	last := ws.NewFrame(ws.OpContinuation, true, append([]byte(nil), req[half:]...))
	var data []byte
	data = append(data, maskedFrame(t, first)...)
	// A ping between fragments is allowed (RFC 6455 §5.4).
	data = append(data, maskedFrame(t, ws.NewPingFrame(nil))...)
	data = append(data, maskedFrame(t, last)...)
	writeSlowly(t, c.conn, data, 3)
	select {
	case b := <-c.resp:
		if cs := b.GetResponses()[0].GetChannelStats().GetChannels(); len(cs) != 1 || !cs[0].GetIsOnline() {
			t.Fatalf("channel stats %v", cs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the split request")
	}
}

// The server's close frame to a peer that never answers it is followed by
// the server hanging up: no reader waits on the socket's deadline, so a
// timer must.
func TestEventReaderCloseHandshakeTimesOut(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.MaxConnPerChannel = 1 })
	priv, pub := newChannel(t), newChannel(t)
	q := "CHANNEL_ID=" + ts.signer.SignPrivate(priv, pub) + "&revision=19"
	old, br, _, err := ws.Dial(t.Context(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+q)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	var r io.Reader = old
	if br != nil {
		r = io.MultiReader(br, old)
	}
	ts.waitWebSockets(t, 1)
	// A second connection on the channel evicts the first with 4029.
	ts.dial(t, q)
	if err := old.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	f, err := readControl(t, r)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("got %v, %v; want a close", f.Header, err)
	}
	if code, _ := ws.ParseCloseFrameData(f.Payload); code != 4029 {
		t.Fatalf("closed with %d, want 4029", code)
	}
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after an unanswered close the server should hang up; read gave %v", err)
	}
	ts.waitWebSockets(t, 1)
}

// The goroutine readers, the fallback outside Linux, still do everything.
func TestGoroutineReaders(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.GoroutineReaders = true })
	ch := newChannel(t)
	q := ts.subQuery([]channel.ID{ch}, "")
	var wg sync.WaitGroup
	clients := make([]*wsClient, 20)
	for i := range clients {
		clients[i] = ts.dial(t, q)
	}
	ts.waitWebSockets(t, 20)
	if polled, _ := ts.eventReaders(); polled != 0 {
		t.Fatalf("%d websockets read from the poller with GoroutineReaders set", polled)
	}
	ts.publish(t, `{"g":1}`, ch)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Not c.next: t.Fatal must not be called outside the test's goroutine.
			if f, err := c.tryNext(); err != nil {
				t.Error(err)
			} else if string(f.Text) != `{"g":1}` {
				t.Errorf("got %s", f.Text)
			}
			_ = c.conn.Close()
		}()
	}
	wg.Wait()
	ts.waitWebSockets(t, 0)
}

// After a shutdown the poller stops once the last socket has ended.
func TestPollerStopsAfterShutdown(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	c := ts.dial(t, ts.subQuery([]channel.ID{ch}, ""))
	ts.waitWebSockets(t, 1)
	waitFor(t, "the websocket read from the poller", func() bool { polled, _ := ts.eventReaders(); return polled == 1 })
	ts.rt.pollMu.Lock()
	p := ts.rt.poll
	ts.rt.pollMu.Unlock()
	if p == nil {
		t.Fatal("no poller")
	}
	if err := ts.rt.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.waitClosed(t)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the poller still runs after shutdown")
	}
}
