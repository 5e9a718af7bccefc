package realtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

// failingBroker fails the calls the JSON-RPC methods make while fail is
// set, and counts publishes.
type failingBroker struct {
	broker.Broker
	fail      atomic.Bool
	published atomic.Int64
}

var errBrokerDown = errors.New("broker down")

func (b *failingBroker) Publish(ctx context.Context, m *message.Message) error {
	if b.fail.Load() {
		return errBrokerDown
	}
	b.published.Add(1)
	return b.Broker.Publish(ctx, m)
}

func (b *failingBroker) Online(ctx context.Context, chans []channel.ID) ([]int, error) {
	if b.fail.Load() {
		return nil, errBrokerDown
	}
	return b.Broker.Online(ctx, chans)
}

func (b *failingBroker) SetLastSeen(ctx context.Context, seen map[channel.ID]time.Time) error {
	if b.fail.Load() {
		return errBrokerDown
	}
	return b.Broker.SetLastSeen(ctx, seen)
}

// newFailingServer is a test server whose broker can be made to fail.
func newFailingServer(t *testing.T) (*testServer, *failingBroker) {
	t.Helper()
	h := hub.New()
	mem, err := memory.New(memory.Options{HistoryPerChannel: 100}, h)
	if err != nil {
		t.Fatal(err)
	}
	fb := &failingBroker{Broker: mem}
	signer := channel.NewSigner([]byte("SECURITYKEY123456"), channel.SHA1)
	rt := New(testOptions(), fb, h, signer, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(rt.Handler())
	ts := &testServer{Server: srv, rt: rt, broker: mem, hub: h, signer: signer}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rt.Shutdown(ctx)
		srv.Close()
		_ = mem.Close(ctx)
	})
	return ts, fb
}

// A broker failure is -32603 Internal error, on both faces, and never
// closes the connection.
func TestV5InternalErrors(t *testing.T) {
	ts, fb := newFailingServer(t)
	c := ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	ts.waitUser(t, 1, 1)

	fb.fail.Store(true)
	const internal = `{"code":-32603,"message":"Internal error"}`
	for method, params := range map[string]string{
		"publish":          `{"userList":[2],"body":{}}`,
		"getUsersLastSeen": `{"userList":[2]}`,
	} {
		c.send(t, `{"jsonrpc":"2.0","method":"`+method+`","params":`+params+`,"id":7}`)
		<-c.resps
		if got := <-c.frames; got != `{"jsonrpc":"2.0","id":7,"error":`+internal+`}` {
			t.Fatalf("%s: %s", method, got)
		}
	}
	for method, params := range map[string]string{
		"publish":             `{"userList":[2],"body":{}}`,
		"getUsersLastSeen":    `{"userList":[2]}`,
		"updateUsersLastSeen": `{"2":1700000000}`,
	} {
		code, got, _ := ts.postAPI(t, `{"jsonrpc":"2.0","method":"`+method+`","params":`+params+`}`, nil)
		if code != 200 || got != `{"jsonrpc":"2.0","id":null,"error":`+internal+`}` {
			t.Fatalf("api %s: %d %s", method, code, got)
		}
	}
	fb.fail.Store(false)
	if r := c.call(t, "ping", `{}`); !strings.Contains(string(r.Result), "pong") {
		t.Fatalf("after the failures: %+v", r)
	}
}

// A user nobody watches comes and goes without a status message; a watched
// one's changes are published.
func TestV5StatusOnlyForWatchedUsers(t *testing.T) {
	ts, fb := newFailingServer(t)
	u := ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	ts.waitUser(t, 1, 1)
	_ = u.conn.Close()
	ts.waitUser(t, 1, 0)
	// The last-seen record is written once the departure is settled (and a
	// watcher subscribing before that could rightly get an offline event).
	waitFor(t, "user 1 last seen", func() bool {
		seen, _ := ts.broker.LastSeen(t.Context(), []channel.ID{channel.User(testTenant, 1)})
		return len(seen) == 1
	})
	if n := fb.published.Load(); n != 0 {
		t.Fatalf("%d messages published for an unwatched user", n)
	}
	w := ts.dialRPC(t, "token="+ts.tokenFor(2)+"&jsonRpc=true")
	w.call(t, "subscribeStatusChange", `{"userId":1}`)
	ts.dialRPC(t, "token="+ts.tokenFor(1)+"&jsonRpc=true")
	if m := w.next(t); !strings.Contains(string(m.Body), `"user_id":1,"online":true`) || fb.published.Load() != 1 {
		t.Fatalf("watched: %s, %d published", m.Body, fb.published.Load())
	}
}

// Users coming and going while others watch them, all at once: no data
// race, and once everyone has left nothing stays attached, in the hub or in
// the broker's presence.
func TestV5ConcurrentChurnLeavesNothingAttached(t *testing.T) {
	ts := newTestServer(t, nil)
	const users, watchers, rounds = 5, 6, 4
	var wg sync.WaitGroup
	for w := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ts.tryDialRPC(t, "token="+ts.tokenFor(int64(100+w))+"&jsonRpc=true")
			if err != nil {
				t.Error(err)
				return
			}
			for u := 1; u <= users; u++ {
				_ = c.write(fmt.Sprintf(`{"jsonrpc":"2.0","method":"subscribeStatusChange","params":{"userId":%d},"id":%d}`, u, u))
			}
			if w%2 == 0 {
				_ = c.write(`{"jsonrpc":"2.0","method":"unsubscribeStatusChange","params":{"userId":1},"id":99}`)
			}
			_ = c.conn.Close() // with calls possibly still in flight
		}()
	}
	for u := 1; u <= users; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				c, err := ts.tryDialRPC(t, "token="+ts.tokenFor(int64(u))+"&jsonRpc=true")
				if err != nil {
					t.Error(err)
					return
				}
				_ = c.conn.Close()
			}
		}()
	}
	wg.Wait()
	ts.waitWebSockets(t, 0)
	waitFor(t, "every session gone", func() bool {
		ts.rt.sessMu.Lock()
		defer ts.rt.sessMu.Unlock()
		return len(ts.rt.sessions) == 0
	})
	if n := ts.hub.Channels(); n != 0 {
		t.Fatalf("%d channels still have local subscribers", n)
	}
	var chans []channel.ID
	for u := int64(1); u <= 100+watchers; u++ {
		chans = append(chans, channel.User(testTenant, u), channel.Status(testTenant, u), channel.Presence(testTenant, u))
	}
	counts, err := ts.broker.Online(t.Context(), chans)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range counts {
		if n != 0 {
			t.Fatalf("channel %d of user %d still counts %d connections", i%3, i/3+1, n)
		}
	}
}
