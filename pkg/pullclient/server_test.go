package pullclient_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/testkit"
	"github.com/pushpull/pushpull/internal/token"
)

const testKey = "pullclient-test-key"

// env is a pushpull server run by the test, and what a test needs to
// subscribe and publish on it.
type env struct {
	srv    *testkit.Server
	signer *channel.Signer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cfg := testkit.Config(t)
	cfg.SignatureKey = testKey
	s, err := server.New(cfg, testkit.Logger())
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: testkit.Serve(t, s, true), signer: channel.NewSigner([]byte(testKey), channel.SHA1)}
}

// newChannel makes up a channel id.
func newChannel() channel.ID {
	var id channel.ID
	_, _ = rand.Read(id[:])
	return id
}

// jwt is a version 5 token for the channel.
func (e *env) jwt(id channel.ID) string {
	now := time.Now()
	return token.Sign(token.Claims{Issuer: "test", IssuedAt: now, Expires: now.Add(time.Hour), Channels: []channel.ID{id}}, []byte(testKey))
}

// publish sends a message to the channel through the backend route and
// waits until the server stored it.
func (e *env) publish(t testing.TB, id channel.ID, command string, n int) {
	t.Helper()
	body := fmt.Sprintf(`{"module_id":"Test","command":%q,"params":{"n":%d}}`, command, n)
	resp, err := http.Post(e.srv.Internal+"/pub/?CHANNEL_ID="+id.String(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Errorf("publish: %d %s", resp.StatusCode, b)
	}
}

// cutter is a TCP proxy in front of the server whose connections a test
// can cut, as a network failure would.
type cutter struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln := testkit.Listen(t)
	c := &cutter{addr: ln.Addr().String()}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			c.wg.Add(2)
			go func() { defer c.wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer c.wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		c.cut()
		c.wg.Wait()
	})
	return c
}

// cut closes every connection through the proxy.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}
