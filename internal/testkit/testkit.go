// Package testkit holds the helpers that the tests of several packages
// share: a pushpull server run in the test's process on loopback listeners,
// a configuration that writes only into the test's temporary directory,
// loopback sockets, and the decoding of a JSON answer.
//
// It imports no server code, so that the server package's own tests can use
// it: callers build the server (server.New) and hand it to Serve.
package testkit

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/config"
)

// stopTimeout bounds a server's graceful stop in tests; a server that takes
// longer is reported, not waited for forever.
const stopTimeout = 60 * time.Second

// Config is the default configuration with its data directory in the
// test's temporary directory and trusted routes on a separate listener,
// which Serve binds.
func Config(t testing.TB) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.InternalAddr = "127.0.0.1:0" // never the default port another test may hold
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg
}

// Logger discards everything: tests assert on behaviour, not on logs.
func Logger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Listen binds a free loopback port, closed when the test ends unless
// something else closed it first.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TCPPair returns the two ends of a loopback TCP connection, closed when
// the test ends: real sockets for code that writes with writev or watches
// them with epoll.
func TCPPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Servable is what a *server.Server offers to tests.
type Servable interface {
	ServeListeners(ctx context.Context, public, internal net.Listener) error
}

// Server is a server serving until Stop or the end of the test.
type Server struct {
	// URL is the base URL of the public listener, http://127.0.0.1:port.
	URL string
	// Internal is the base URL of the trusted routes (/pub/, /api/): a
	// second listener, or URL when the server was started with one.
	Internal string

	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// Serve runs s on listeners bound first, so that the test can connect as
// soon as it returns: one public listener and, if internal is set, a
// second one for the trusted routes. The server is stopped when the test
// ends, and a failure to stop cleanly fails the test.
func Serve(t testing.TB, s Servable, internal bool) *Server {
	t.Helper()
	return ServeOn(t, s, Listen(t), internal)
}

// ServeOn is Serve on a public listener the test bound itself, for a
// server whose configuration names its own address (PublicURL).
func ServeOn(t testing.TB, s Servable, ln net.Listener, internal bool) *Server {
	t.Helper()
	srv := &Server{URL: "http://" + ln.Addr().String(), done: make(chan error, 1)}
	srv.Internal = srv.URL
	var iln net.Listener
	if internal {
		iln = Listen(t)
		srv.Internal = "http://" + iln.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv.cancel = cancel
	go func() { srv.done <- s.ServeListeners(ctx, ln, iln) }()
	t.Cleanup(func() { srv.Stop(t) })
	return srv
}

// BeginStop starts the graceful stop without waiting for it, for a test
// that looks at the server while it drains; Stop then waits.
func (s *Server) BeginStop() { s.cancel() }

// Stop stops the server gracefully and waits for it; it may be called more
// than once.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("server shutdown: %v", err)
			}
		case <-time.After(stopTimeout):
			t.Error("server did not stop")
		}
	})
}

// JSON reads an HTTP answer whose body is a JSON object: its status,
// headers and decoded body. err is the error of the request that gave resp,
// so that a call reads testkit.JSON(t)(http.PostForm(…)).
func JSON(t testing.TB) func(resp *http.Response, err error) (int, http.Header, map[string]any) {
	t.Helper()
	return func(resp *http.Response, err error) (int, http.Header, map[string]any) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("%s %s: answer is not a JSON object: %v", resp.Request.Method, resp.Request.URL, err)
		}
		return resp.StatusCode, resp.Header, body
	}
}
