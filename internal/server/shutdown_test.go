package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/wire"
)

// trickle opens a connection to addr and sends the head of a POST to path
// that announces a body of 100 bytes, and its first byte only.
func trickle(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n{", path, addr); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitCut waits until the server ends the exchange on c: an answer or a
// closed connection. It fails the test if c is still open after limit.
func waitCut(t *testing.T, c net.Conn, limit time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server still holds the trickled request after %s", limit)
	}
}

// TestSnapshotWrittenWhileARequestIsStuck: a client trickling a body must
// not cost the history snapshot of a graceful stop (issue 11 #5), and its
// request is cut at the shutdown deadline.
func TestSnapshotWrittenWhileARequestIsStuck(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECURITYKEY123456"
	cfg.ShutdownTimeout = time.Second
	cfg.BodyReadTimeout = time.Hour // the shutdown deadline, not this, must cut it
	active := make(chan struct{}, 1)
	r := startWith(t, cfg, func(s *Server) {
		s.internal.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateActive {
				select {
				case active <- struct{}{}:
				default:
				}
			}
		}
	})
	ch := "fb9f7e13dc3d595c5aefe1a0216c27a2"
	resp, err := http.Post(r.Internal+"/pub/?CHANNEL_ID="+ch, "application/json", strings.NewReader(`{"kept":true}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %v %v", resp, err)
	}
	resp.Body.Close()
	<-active // the publish's own connection
	stuck := trickle(t, strings.TrimPrefix(r.Internal, "http://"), "/pub/?CHANNEL_ID="+ch)
	<-active

	r.Stop(t) // fails the test if Serve returns an error
	waitCut(t, stuck, 30*time.Second)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "history.snapshot")); err != nil {
		t.Fatalf("no snapshot after the stop: %v", err)
	}

	r2 := start(t, cfg)
	signed := channel.NewSigner([]byte(cfg.SignatureKey), channel.SHA1).SignChannel(mustParse(t, ch))
	code, body := get(t, r2.URL+"/sub/?CHANNEL_ID="+url.QueryEscape(signed)+"&mid=00000000000000000000000000")
	frames, err := wire.ParseTextFrames([]byte(body))
	if code != 200 || err != nil || len(frames) != 1 || string(frames[0].Text) != `{"kept":true}` {
		t.Fatalf("after restart: %d %q %v", code, body, err)
	}
}

// TestSlowBodiesAreCut: 500 clients trickling request bodies to every route
// that reads one neither keep /healthz from answering nor hold their
// connections past --body-read-timeout (issue 11 #6).
func TestSlowBodiesAreCut(t *testing.T) {
	const clients = 500
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECRET"
	cfg.BodyReadTimeout = 2 * time.Second
	r := start(t, cfg)
	pub := strings.TrimPrefix(r.URL, "http://")
	internal := strings.TrimPrefix(r.Internal, "http://")
	targets := []struct{ addr, path string }{
		{pub, "/rest/pull.application.config.get"},
		{pub, "/oauth/token/"},
		{pub, "/pubweb/?CHANNEL_ID=x"},
		{internal, "/pub/?CHANNEL_ID=fb9f7e13dc3d595c5aefe1a0216c27a2"},
		{internal, "/api/"},
	}
	conns := make([]net.Conn, clients)
	for i := range conns {
		tg := targets[i%len(targets)]
		conns[i] = trickle(t, tg.addr, tg.path)
	}
	// Every connection is held by a handler that reads its body now; the
	// server must still answer others.
	for _, base := range []string{r.URL, r.Internal} {
		client := &http.Client{Timeout: 30 * time.Second}
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			t.Fatalf("healthz with %d slow bodies: %v", clients, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz: %d", resp.StatusCode)
		}
	}
	// Each is answered or closed once its deadline has passed, though its
	// client would trickle on for ever.
	for _, c := range conns {
		waitCut(t, c, 60*time.Second)
	}
}
