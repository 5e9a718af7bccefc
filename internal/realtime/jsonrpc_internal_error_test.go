package realtime

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

// failingBroker fails the calls the JSON-RPC methods make while fail is set.
type failingBroker struct {
	broker.Broker
	fail atomic.Bool
}

var errBrokerDown = errors.New("broker down")

func (b *failingBroker) Publish(ctx context.Context, m *message.Message) error {
	if b.fail.Load() {
		return errBrokerDown
	}
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

// A broker failure is -32603 Internal error, on both faces, and never
// closes the connection.
func TestV5InternalErrors(t *testing.T) {
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
