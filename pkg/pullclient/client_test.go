package pullclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/testkit"
	"github.com/pushpull/pushpull/internal/token"
	"github.com/pushpull/pushpull/pkg/pullclient"
)

// zeroMID resumes after every stored message: a test publishes one before
// it connects, so that even a long poll, which the server attaches only
// when the request arrives, has something to answer at once and then polls
// on from that id, missing nothing.
const zeroMID = "00000000000000000000000000"

// wait is the longest a test waits for an event; only a broken client takes
// it.
const wait = 30 * time.Second

// next reads the next event that is not Connected or Disconnected.
func next(t *testing.T, c *pullclient.Client) pullclient.Event {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-c.Events():
			if !ok {
				t.Fatalf("client stopped: %v", c.Err())
			}
			switch e.(type) {
			case pullclient.Connected, pullclient.Disconnected:
				continue
			}
			return e
		case <-timer.C:
			t.Fatal("no event")
		}
	}
}

// params reads {"n":…} from a test message's params.
func params(t *testing.T, m pullclient.Message) int {
	t.Helper()
	var p struct{ N int }
	if err := json.Unmarshal(m.Params, &p); err != nil {
		t.Fatalf("params %s: %v", m.Params, err)
	}
	return p.N
}

// TestProtocols subscribes with every protocol over both transports and
// checks what each carries: the first message by recovery, then live ones
// in order.
func TestProtocols(t *testing.T) {
	e := newEnv(t)
	for _, tr := range []pullclient.Transport{pullclient.WebSocket, pullclient.LongPoll} {
		for _, p := range []struct {
			name    string
			version int
			format  pullclient.Format
			jwt     bool
		}{
			{"v3 text", 3, pullclient.FormatText, false},
			{"v3 json", 3, pullclient.FormatJSON, false},
			{"v4 protobuf", 4, pullclient.FormatText, false},
			{"v5 jsonrpc", 5, pullclient.FormatText, true},
		} {
			t.Run(tr.String()+"/"+p.name, func(t *testing.T) {
				id := newChannel()
				e.publish(t, id, "first", 0)
				cfg := pullclient.Config{
					WebSocketURL: strings.Replace(e.srv.URL, "http", "ws", 1) + "/sub/",
					Version:      p.version,
					Format:       p.format,
					Transport:    tr,
					MID:          zeroMID,
				}
				if p.jwt {
					cfg.JWT = e.jwt(id)
				} else {
					cfg.Channels = []string{e.signer.SignChannel(id)}
				}
				c, err := pullclient.Dial(t.Context(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				for n := 1; n <= 3; n++ {
					e.publish(t, id, "live", n)
				}
				for n := 0; n <= 3; n++ {
					m, ok := next(t, c).(pullclient.Message)
					if !ok {
						t.Fatalf("message %d: not a Message", n)
					}
					if got := params(t, m); got != n || m.ModuleID != "test" || len(m.MID) != 26 {
						t.Fatalf("message %d: n %d, module %q, mid %q", n, got, m.ModuleID, m.MID)
					}
					switch {
					case p.version == 3 && (m.Channel != id.String() || m.Created.IsZero()):
						t.Errorf("text frame: channel %q, created %v", m.Channel, m.Created)
					case p.version >= 4 && m.Sender.Type != pullclient.SenderBackend:
						t.Errorf("sender %+v", m.Sender)
					case p.version == 4 && (m.Created.IsZero() || m.Expiry == 0):
						t.Errorf("protobuf: created %v, expiry %v", m.Created, m.Expiry)
					}
					if n == 3 && c.LastMID() != m.MID {
						t.Errorf("LastMID %s, want the last message's %s", c.LastMID(), m.MID)
					}
				}
			})
		}
	}
}

// TestFallbackToLongPoll: behind a proxy that refuses WebSocket upgrades,
// Auto falls back to long polling on the same URL and gets the messages.
func TestFallbackToLongPoll(t *testing.T) {
	e := newEnv(t)
	target, _ := url.Parse(e.srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			http.Error(w, "upgrades are not allowed", http.StatusForbidden)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	id := newChannel()
	e.publish(t, id, "first", 0)
	c, err := pullclient.Dial(t.Context(), pullclient.Config{
		WebSocketURL: front.URL + "/sub/",
		Channels:     []string{e.signer.SignChannel(id)},
		MID:          zeroMID,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := (<-c.Events()).(pullclient.Connected); got.Transport != pullclient.LongPoll {
		t.Fatalf("connected over %v", got.Transport)
	}
	e.publish(t, id, "live", 1)
	for n := 0; n <= 1; n++ {
		if m := next(t, c).(pullclient.Message); params(t, m) != n {
			t.Fatalf("message %d: %s", n, m.Body)
		}
	}
}

// TestRecoveryAfterDrops cuts the connection twice while messages are
// being published: every message arrives once and in order.
func TestRecoveryAfterDrops(t *testing.T) {
	e := newEnv(t)
	for _, tr := range []pullclient.Transport{pullclient.WebSocket, pullclient.LongPoll} {
		t.Run(tr.String(), func(t *testing.T) {
			front := newCutter(t, strings.TrimPrefix(e.srv.URL, "http://"))
			id := newChannel()
			e.publish(t, id, "first", 0)
			c, err := pullclient.Dial(t.Context(), pullclient.Config{
				WebSocketURL: "ws://" + front.addr + "/sub/",
				Channels:     []string{e.signer.SignChannel(id)},
				Transport:    tr,
				MID:          zeroMID,
				Backoff:      pullclient.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Three rounds of publishing, the connection cut after each of
			// the first two has been received: what the next round
			// publishes can only come through a new connection.
			n := 0 // the next message to read; 0 was published before Dial
			for round, last := range []int{40, 100, 150} {
				for k := max(n, 1); k <= last; k++ {
					e.publish(t, id, "live", k)
				}
				reconnected := false
				for n <= last {
					var ev pullclient.Event
					select {
					case ev = <-c.Events():
					case <-time.After(wait):
						t.Fatalf("stuck after message %d", n-1)
					}
					switch ev := ev.(type) {
					case pullclient.Message:
						if got := params(t, ev); got != n {
							t.Fatalf("got message %d, want %d (lost or duplicated)", got, n)
						}
						n++
					case pullclient.Connected:
						reconnected = true
					case nil:
						t.Fatalf("client stopped: %v", c.Err())
					}
				}
				// A cut always breaks a WebSocket; a long poll only when it
				// falls on a poll in flight rather than an idle connection.
				if round > 0 && tr == pullclient.WebSocket && !reconnected {
					t.Errorf("round %d came without a new connection", round)
				}
				if last < 150 {
					front.cut()
				}
			}
			select {
			case ev := <-c.Events():
				if m, ok := ev.(pullclient.Message); ok {
					t.Errorf("extra message %s", m.Body)
				}
			case <-time.After(100 * time.Millisecond): // a duplicate would be in flight by now
			}
		})
	}
}

// TestBackoffOnRefusingServer: against a port nobody listens on, the waits
// double from Min up to Max, each within its jitter.
func TestBackoffOnRefusingServer(t *testing.T) {
	ln := testkit.Listen(t)
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var waits []time.Duration
	err := pullclient.Run(ctx, pullclient.Config{
		WebSocketURL: "ws://" + addr + "/sub/",
		Channels:     []string{"0123456789abcdef0123456789abcdef.sig"},
		KeepTrying:   true,
		Backoff:      pullclient.Backoff{Min: time.Millisecond, Max: 8 * time.Millisecond, Jitter: 0.5},
	}, func(e pullclient.Event) error {
		d, ok := e.(pullclient.Disconnected)
		if !ok {
			t.Errorf("event %T", e)
			return nil
		}
		if !strings.Contains(d.Err.Error(), "connection refused") {
			t.Errorf("error %v", d.Err)
		}
		waits = append(waits, d.Retry)
		if len(waits) == 6 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v, want nil after cancel", err)
	}
	bases := []time.Duration{1, 2, 4, 8, 8, 8}
	for i, w := range waits {
		base := bases[i] * time.Millisecond
		if w < base || w > base+base/2 {
			t.Errorf("wait %d: %v, want %v to %v", i, w, base, base+base/2)
		}
	}
}

// TestFirstConnectionFailureEndsDial: without KeepTrying, Dial reports a
// server that is not there.
func TestFirstConnectionFailureEndsDial(t *testing.T) {
	ln := testkit.Listen(t)
	addr := ln.Addr().String()
	ln.Close()
	for _, tr := range []pullclient.Transport{pullclient.WebSocket, pullclient.LongPoll} {
		_, err := pullclient.Dial(t.Context(), pullclient.Config{
			WebSocketURL: "ws://" + addr, Channels: []string{"a.b"}, Transport: tr,
		})
		if err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%v: Dial: %v", tr, err)
		}
	}
}

// TestRefused: channels with a wrong signature are refused (4010), over
// both transports; with Reload the client fetches a good config and goes
// on.
func TestRefused(t *testing.T) {
	e := newEnv(t)
	id := newChannel()
	bad := channel.NewSigner([]byte("another key"), channel.SHA1).SignChannel(id)
	for _, tr := range []pullclient.Transport{pullclient.WebSocket, pullclient.LongPoll} {
		cfg := pullclient.Config{WebSocketURL: e.srv.URL, Channels: []string{bad}, Transport: tr}
		c, err := pullclient.Dial(t.Context(), cfg)
		if err == nil {
			// A WebSocket is up once upgraded; the server closes it with
			// 4010 right after, which ends the client.
			<-c.Done()
			err = c.Err()
		}
		var refused *pullclient.RefusedError
		if !errors.Is(err, pullclient.ErrRefused) || !errors.As(err, &refused) || refused.Reason != "4010: Wrong Channel Id." {
			t.Errorf("%v: Dial: %v", tr, err)
		}
	}
	reloads := 0
	e.publish(t, id, "first", 0)
	c, err := pullclient.Dial(t.Context(), pullclient.Config{
		WebSocketURL: e.srv.URL, Channels: []string{bad}, MID: zeroMID, KeepTrying: true,
		Backoff: pullclient.Backoff{Min: time.Millisecond, Max: time.Millisecond},
		Reload: func(context.Context) (pullclient.Config, error) {
			reloads++
			return pullclient.Config{WebSocketURL: e.srv.URL, Channels: []string{e.signer.SignChannel(id)}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := next(t, c).(pullclient.Message); params(t, m) != 0 || reloads != 1 {
		t.Errorf("after reload: %s, %d reloads", m.Body, reloads)
	}
}

// TestServerRestart: a server stopping gracefully says server_restart; the
// client reports it and waits ServerRestartDelay before reconnecting.
func TestServerRestart(t *testing.T) {
	e := newEnv(t)
	id := newChannel()
	c, err := pullclient.Dial(t.Context(), pullclient.Config{
		WebSocketURL:       e.srv.URL,
		Channels:           []string{e.signer.SignChannel(id)},
		ServerRestartDelay: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go e.srv.Stop(t)
	if _, ok := next(t, c).(pullclient.ServerRestart); !ok {
		t.Fatal("no server_restart")
	}
	for ev := range c.Events() {
		if d, ok := ev.(pullclient.Disconnected); ok {
			if !d.Restarting || d.Retry != time.Hour {
				t.Errorf("disconnected %+v", d)
			}
			return
		}
	}
	t.Fatalf("client stopped: %v", c.Err())
}

// TestCancel: cancelling Run's context ends it with nil whether it is
// reading a WebSocket, holding a poll or waiting to reconnect; Close ends
// a Dial'd client and closes its events.
func TestCancel(t *testing.T) {
	e := newEnv(t)
	id := newChannel()
	for _, tr := range []pullclient.Transport{pullclient.WebSocket, pullclient.LongPoll} {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- pullclient.Run(ctx, pullclient.Config{
				WebSocketURL: e.srv.URL, Channels: []string{e.signer.SignChannel(id)}, Transport: tr,
			}, func(ev pullclient.Event) error {
				if _, ok := ev.(pullclient.Connected); ok {
					cancel()
				}
				return nil
			})
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%v: Run: %v", tr, err)
			}
		case <-time.After(wait):
			t.Fatalf("%v: Run did not return", tr)
		}
		cancel()
	}
	c, err := pullclient.Dial(t.Context(), pullclient.Config{WebSocketURL: e.srv.URL, Channels: []string{e.signer.SignChannel(id)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, open := <-c.Events(); open {
		t.Error("events still open after Close")
	}
	select {
	case <-c.Done():
	default:
		t.Error("Done not closed after Close")
	}
}

// TestHandlerErrorEndsRun: an error from the event function is Run's.
func TestHandlerErrorEndsRun(t *testing.T) {
	e := newEnv(t)
	stop := errors.New("enough")
	err := pullclient.Run(t.Context(), pullclient.Config{WebSocketURL: e.srv.URL, Channels: []string{e.signer.SignChannel(newChannel())}},
		func(pullclient.Event) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("Run: %v", err)
	}
}

// TestCloseLeavesNoGoroutines: once Close returns, no goroutine of the
// client is left, over either transport, also with a long poll in flight.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	e := newEnv(t)
	id := newChannel()
	e.publish(t, id, "first", 0)
	for _, tr := range []pullclient.Transport{pullclient.WebSocket, pullclient.LongPoll} {
		c, err := pullclient.Dial(t.Context(), pullclient.Config{
			WebSocketURL: e.srv.URL, Channels: []string{e.signer.SignChannel(id)}, Transport: tr, MID: zeroMID,
		})
		if err != nil {
			t.Fatal(err)
		}
		next(t, c) // the first message: the next poll is now held by the server
		if err := c.Close(); err != nil {
			t.Errorf("%v: Close: %v", tr, err)
		}
		if left := clientGoroutines(); left != "" {
			t.Errorf("%v: goroutine left after Close:\n%s", tr, left)
		}
	}
}

// clientGoroutines returns the stacks of the client's goroutines still
// alive. A goroutine whose last statement has run (its stack already in
// runtime.goexit, its top frame) can still be listed for a moment after the one that
// waited for it went on, and no event marks its exit: such stacks are
// looked at again for up to 10 s, which a leaked goroutine never passes.
func clientGoroutines() string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		exiting := true
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "pkg/pullclient.") && !strings.Contains(g, "pullclient_test.") {
				left = append(left, g)
				lines := strings.SplitN(g, "\n", 3)
				exiting = exiting && len(lines) > 1 && strings.HasPrefix(lines[1], "runtime.goexit")
			}
		}
		if len(left) == 0 {
			return ""
		}
		if !exiting || time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// TestChannelExpireSwitchesChannel: channel_expire with action reconnect
// and a new channel (what pushpull sends when a shared channel is
// replaced) makes the client reconnect on the new channel by itself.
func TestChannelExpireSwitchesChannel(t *testing.T) {
	e := newEnv(t)
	old, replacement := newChannel(), newChannel()
	c, err := pullclient.Dial(t.Context(), pullclient.Config{WebSocketURL: e.srv.URL, Channels: []string{e.signer.SignChannel(old)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"module_id":"pull","command":"channel_expire","params":{"action":"reconnect",` +
		`"channel":{"id":"` + e.signer.SignChannel(old) + `","type":"shared"},` +
		`"new_channel":{"id":"` + e.signer.SignChannel(replacement) + `","type":"shared"}}}`
	resp, err := http.Post(e.srv.Internal+"/pub/?CHANNEL_ID="+old.String(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ce, ok := next(t, c).(pullclient.ChannelExpire)
	if !ok || ce.Action != "reconnect" || ce.NewChannel == nil || ce.NewChannel.ID != e.signer.SignChannel(replacement) {
		t.Fatalf("channel_expire %+v", ce)
	}
	// The client reconnects at once; what is published on the new channel
	// after that connection is up arrives.
	for ev := range c.Events() {
		if got, ok := ev.(pullclient.Connected); ok {
			if got.MID == "" {
				t.Error("reconnected without the last mid")
			}
			break
		}
	}
	e.publish(t, replacement, "on the new channel", 1)
	if m := next(t, c).(pullclient.Message); params(t, m) != 1 {
		t.Errorf("message %s", m.Body)
	}
}

// TestCallsAndUserStatus: a version 5 client calls the server's methods
// and, watching a user, gets UserStatus events when that user connects.
func TestCallsAndUserStatus(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	userToken := func(user int64) string {
		return token.Sign(token.Claims{Issuer: "portal", IssuedAt: now, Expires: now.Add(time.Hour), User: user}, []byte(testKey))
	}
	c, err := pullclient.Dial(t.Context(), pullclient.Config{WebSocketURL: e.srv.URL, JWT: userToken(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if res, err := c.Call(ctx, "ping", struct{}{}); err != nil || string(res) != `"pong"` {
		t.Errorf("ping: %s, %v", res, err)
	}
	var ce *pullclient.CallError
	if _, err := c.Call(ctx, "noSuchMethod", struct{}{}); !errors.As(err, &ce) || ce.Code != -32601 {
		t.Errorf("unknown method: %v", err)
	}
	if res, err := c.Call(ctx, "subscribeStatusChange", map[string]int{"userId": 2}); err != nil || string(res) != "true" {
		t.Fatalf("subscribeStatusChange: %s, %v", res, err)
	}
	other, err := pullclient.Dial(t.Context(), pullclient.Config{WebSocketURL: e.srv.URL, JWT: userToken(2)})
	if err != nil {
		t.Fatal(err)
	}
	us, ok := next(t, c).(pullclient.UserStatus)
	if !ok || us.UserID != 2 || !us.Online {
		t.Errorf("after user 2 connected: %+v", us)
	}
	other.Close()
	if us, ok := next(t, c).(pullclient.UserStatus); !ok || us.UserID != 2 || us.Online {
		t.Errorf("after user 2 left: %+v", us)
	}

	// Calls need version 5.
	v3, err := pullclient.Dial(t.Context(), pullclient.Config{WebSocketURL: e.srv.URL, Channels: []string{e.signer.SignChannel(newChannel())}})
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close()
	if _, err := v3.Call(ctx, "ping", nil); !errors.Is(err, pullclient.ErrNotRPC) {
		t.Errorf("version 3 call: %v", err)
	}
}
