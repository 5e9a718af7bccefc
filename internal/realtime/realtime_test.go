package realtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

type testServer struct {
	*httptest.Server
	rt     *Server
	broker *memory.Broker
	hub    *hub.Hub
	signer *channel.Signer
}

func testOptions() Options {
	return Options{
		SubPaths:              []string{"/sub/", "/bitrix/subws/"},
		PubPaths:              []string{"/pub/"},
		APIPaths:              []string{"/api/"},
		PubWebPaths:           []string{"/pubweb/"},
		StatPath:              "/server-stat/",
		MaxPayload:            1 << 20,
		MaxChannelsPerRequest: 100,
		MessageTTL:            86400 * time.Second,
		Replay:                broker.HistoryLimit{PerChannel: 100, Total: 200},
		PollTimeout:           40 * time.Second,
		PingInterval:          time.Hour,
		RPCPingInterval:       time.Hour,
		WriteTimeout:          5 * time.Second,
		SendQueue:             1024,
		MaxConnPerChannel:     100,
		// The defaults of `pushpull serve`, so that every test publishes
		// under them.
		ClientPublishRate:       RateLimit{PerSecond: 50, Burst: 500},
		ClientPublishIPRate:     RateLimit{PerSecond: 50, Burst: 500},
		ClientPublishTargetRate: RateLimit{PerSecond: 50, Burst: 500},
	}
}

func newTestServer(t *testing.T, tweak func(*Options)) *testServer {
	t.Helper()
	return newTestServerKeeping(t, 1000, tweak)
}

// newTestServerKeeping is newTestServer with a history of perChannel
// messages per channel.
func newTestServerKeeping(t *testing.T, perChannel int, tweak func(*Options)) *testServer {
	t.Helper()
	return newTestServerWith(t, perChannel, false, tweak)
}

// newTestServerWith is newTestServerKeeping that keeps long polls'
// sessions between polls (Options.KeepPolls) if keepPolls.
func newTestServerWith(t *testing.T, perChannel int, keepPolls bool, tweak func(*Options)) *testServer {
	t.Helper()
	opt := testOptions()
	opt.KeepPolls = keepPolls
	if tweak != nil {
		tweak(&opt)
	}
	h := hub.New()
	b, err := memory.New(memory.Options{HistoryPerChannel: perChannel}, h)
	if err != nil {
		t.Fatal(err)
	}
	signer := channel.NewSigner([]byte("SECURITYKEY123456"), channel.SHA1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	rt := New(opt, b, h, signer, log)
	ts := httptest.NewServer(rt.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rt.Shutdown(ctx)
		ts.Close()
		_ = b.Close(ctx)
	})
	return &testServer{Server: ts, rt: rt, broker: b, hub: h, signer: signer}
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newChannel(t *testing.T) channel.ID {
	t.Helper()
	var id channel.ID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

func (ts *testServer) publish(t *testing.T, body string, chans ...channel.ID) {
	t.Helper()
	if code, text := ts.publishRaw(t, body, nil, chans...); code != http.StatusOK {
		t.Fatalf("publish: %d %q", code, text)
	}
}

func (ts *testServer) publishRaw(t *testing.T, body string, header http.Header, chans ...channel.ID) (int, string) {
	t.Helper()
	ids := make([]string, len(chans))
	for i, c := range chans {
		ids[i] = c.String()
	}
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/pub/?CHANNEL_ID="+strings.Join(ids, "/"), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", req.Method, req.URL.Path, err)
		return 0, ""
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("%s %s: no Access-Control-Allow-Origin: *", req.Method, req.URL.Path)
	}
	return resp.StatusCode, string(data)
}

// subQuery is the subscribe query for signed channels.
func (ts *testServer) subQuery(chans []channel.ID, extra string) string {
	signed := make([]string, len(chans))
	for i, c := range chans {
		signed[i] = ts.signer.SignChannel(c)
	}
	q := "CHANNEL_ID=" + url.QueryEscape(strings.Join(signed, "/")) + "&revision=19"
	if extra != "" {
		q += "&" + extra
	}
	return q
}

// wsClient is a raw WebSocket subscriber that counts every frame it gets.
type wsClient struct {
	conn   net.Conn
	frames chan wire.TextFrame
	closed chan wsutil.ClosedError
	errs   chan error
}

func (ts *testServer) dial(t *testing.T, query string) *wsClient {
	t.Helper()
	return dialURL(t, "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+query)
}

func dialURL(t *testing.T, u string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, r, err := dialRaw(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	c := &wsClient{conn: conn, frames: make(chan wire.TextFrame, 10000), closed: make(chan wsutil.ClosedError, 1), errs: make(chan error, 1)}
	readerCleanup(t, conn, func(quit <-chan struct{}) {
		readServer(conn, r, quit, c.closed, c.errs, func(data []byte, _ ws.OpCode) bool {
			fs, err := wire.ParseTextFrames(data)
			if err != nil && !put(c.errs, err, quit) {
				return false
			}
			for _, f := range fs {
				if !put(c.frames, f, quit) {
					return false
				}
			}
			return true
		}, func() { close(c.frames) })
	})
	return c
}

// readerCleanup runs read, a test client's reader, in a goroutine, and at
// cleanup closes the connection and waits for it to end: a reader still
// running after the test would panic the test binary if it reported. read
// must return soon after quit is closed.
func readerCleanup(t *testing.T, conn net.Conn, read func(quit <-chan struct{})) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		read(quit)
	}()
	t.Cleanup(func() {
		close(quit)
		conn.Close()
		<-done
	})
}

// put sends v on ch unless quit closes first; it reports whether it sent.
func put[T any](ch chan<- T, v T, quit <-chan struct{}) bool {
	select {
	case ch <- v:
		return true
	case <-quit:
		return false
	}
}

// dialRaw opens a WebSocket to u; r reads what the handshake's reader
// already holds before the socket.
func dialRaw(ctx context.Context, u string) (net.Conn, io.Reader, error) {
	conn, br, _, err := ws.Dial(ctx, u)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", u, err)
	}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	return conn, r, nil
}

// readServer reads a test client's connection until it ends, handing each
// server message to handle, which returns false to stop reading. A close
// frame goes to closed, any other end to failed (unless quit is closed);
// after runs last.
func readServer(conn net.Conn, r io.Reader, quit <-chan struct{}, closed chan<- wsutil.ClosedError, failed chan<- error,
	handle func(data []byte, op ws.OpCode) bool, after func()) {
	if after != nil {
		defer after()
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, conn}
	for {
		data, op, err := wsutil.ReadServerData(rw)
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				put(closed, ce, quit)
			} else {
				put(failed, err, quit)
			}
			return
		}
		if !handle(data, op) {
			return
		}
	}
}

func (c *wsClient) next(t *testing.T) wire.TextFrame {
	t.Helper()
	f, err := c.tryNext()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tryNext is next for goroutines other than the test's.
func (c *wsClient) tryNext() (wire.TextFrame, error) {
	select {
	case f, ok := <-c.frames:
		if !ok {
			return f, errors.New("connection closed while waiting for a frame")
		}
		return f, nil
	case <-time.After(10 * time.Second):
		return wire.TextFrame{}, errors.New("no frame within 10 s")
	}
}

func (c *wsClient) waitClosed(t *testing.T) wsutil.ClosedError {
	t.Helper()
	return awaitClose(t, c.closed, c.errs)
}

// awaitClose returns the close frame a test client got, failing t if the
// connection ended without one or is still open after 10 s.
func awaitClose(t *testing.T, closed <-chan wsutil.ClosedError, failed <-chan error) wsutil.ClosedError {
	t.Helper()
	select {
	case ce := <-closed:
		return ce
	case err := <-failed:
		t.Fatalf("connection ended without a close frame: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed within 10 s")
	}
	return wsutil.ClosedError{}
}

// waitFor polls cond: the server offers no event for "a connection is
// attached", and these conditions turn true within microseconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitWebSockets waits until the server counts n open WebSockets: a
// connection is subscribed before its handshake completes and counted after.
func (ts *testServer) waitWebSockets(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d websockets", n), func() bool { return ts.rt.Stat().WebSockets == n })
}

func (ts *testServer) waitSubscribers(t *testing.T, ch channel.ID, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d subscribers on %s", n, ch), func() bool { return ts.hub.Subscribers(ch) == n })
}

// longPoll reports errors with t.Errorf and returns an empty response.
func longPoll(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, body, err := tryLongPoll(u)
	if err != nil {
		t.Errorf("%v", err)
		return &http.Response{Header: http.Header{}}, ""
	}
	return resp, body
}

func tryLongPoll(u string) (*http.Response, string, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, "", fmt.Errorf("long poll: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("long poll body: %w", err)
	}
	return resp, string(data), nil
}

type polled struct {
	resp *http.Response
	body string
	err  error
}

// startLongPoll runs a long poll in the background. Its goroutine never
// touches t: a test that fails before collecting it would otherwise see a
// late report panic the whole test binary.
func startLongPoll(u string) <-chan polled {
	done := make(chan polled, 1)
	go func() {
		resp, body, err := tryLongPoll(u)
		done <- polled{resp, body, err}
	}()
	return done
}

// awaitLongPoll collects a poll started with startLongPoll.
func awaitLongPoll(t *testing.T, done <-chan polled) (*http.Response, string) {
	t.Helper()
	select {
	case p := <-done:
		if p.err != nil {
			t.Fatal(p.err)
		}
		return p.resp, p.body
	case <-time.After(2 * time.Minute): // far beyond the tests' poll timeout
		t.Fatal("long poll not answered within 2 minutes")
	}
	return nil, ""
}

func zeroID() message.ID { return message.ID{} }
