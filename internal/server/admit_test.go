package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/testkit"
)

// startHeld starts a server with slots admission slots, all of them taken
// by the test, and returns it with the server.
func startHeld(t *testing.T, slots int, bodyRead time.Duration, prepare func(*Server)) (*testkit.Server, *Server) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECRET"
	cfg.MaxLargeRequests = slots
	cfg.BodyReadTimeout = bodyRead
	var srv *Server
	r := startWith(t, cfg, func(s *Server) {
		srv = s
		for range slots {
			s.admit.slots <- struct{}{}
		}
		if prepare != nil {
			prepare(s)
		}
	})
	return r, srv
}

// sendHead opens a connection to the server at base and sends the head of
// a POST to path with the given extra header lines, and then body.
func sendHead(t *testing.T, base, path, headers string, body []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	addr := strings.TrimPrefix(base, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s\r\n", path, addr, headers); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(body); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	return c, bufio.NewReader(c)
}

// TestLargeRequestRefusedWhenNoSlotFrees: with every slot held, a large
// request is answered 503 with Retry-After once the body-read timeout has
// passed, before its handler sees it, and its connection is closed.
func TestLargeRequestRefusedWhenNoSlotFrees(t *testing.T) {
	r, _ := startHeld(t, 2, time.Second, nil)
	cases := []struct {
		path, headers, want string
	}{
		{"/rest/pull.application.config.get", "Content-Length: 1048576\r\n", `{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}`},
		{"/pubweb/?CHANNEL_ID=x", "Content-Length: 65537\r\n", busyText},
		{"/oauth/token/", "Transfer-Encoding: chunked\r\n", busyText},
	}
	for _, tc := range cases {
		// The body is never sent: were the request handled, its handler
		// would wait for it and answer otherwise.
		_, br := sendHead(t, r.URL, tc.path, tc.headers, nil)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || string(body) != tc.want {
			t.Fatalf("%s: %d %q, want 503 %q", tc.path, resp.StatusCode, body, tc.want)
		}
		if got := resp.Header.Get("Retry-After"); got != "1" || !resp.Close {
			t.Fatalf("%s: Retry-After %q, Connection close %v", tc.path, got, resp.Close)
		}
		// Nothing more comes: the server closed the connection rather
		// than read the body or another request.
		rest, err := io.ReadAll(br)
		var ne net.Error
		if (errors.As(err, &ne) && ne.Timeout()) || len(rest) != 0 {
			t.Fatalf("%s: after the answer %q, %v; want the connection closed", tc.path, rest, err)
		}
	}
}

// TestLargeRequestWaitsForASlot: a large request that finds every slot
// held waits, and is served as usual once one frees.
func TestLargeRequestWaitsForASlot(t *testing.T) {
	queued := make(chan struct{}, 1)
	r, s := startHeld(t, 1, time.Hour, func(s *Server) {
		s.admit.queued = func() { queued <- struct{}{} }
	})
	post := func(size int) (int, string) {
		body := "a=" + strings.Repeat("b", size-2)
		resp, err := http.Post(r.URL+"/rest/pull.application.config.get", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// A small request passes the held slot: what a served call answers.
	wantCode, wantBody := post(1 << 10)
	if wantCode == http.StatusServiceUnavailable {
		t.Fatalf("a small request: %d %s", wantCode, wantBody)
	}
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	go func() {
		code, body := post(256 << 10)
		done <- answer{code, body}
	}()
	select {
	case <-queued:
	case a := <-done:
		t.Fatalf("a large request with every slot held was not queued: %d %s", a.code, a.body)
	}
	<-s.admit.slots
	a := <-done
	if a.code != wantCode || a.body != wantBody {
		t.Fatalf("the large request once admitted: %d %s, want %d %s", a.code, a.body, wantCode, wantBody)
	}
	if n := len(s.admit.slots); n != 0 {
		t.Fatalf("%d slots still held after the request", n)
	}
}

// TestOnlyLargePublicBodiesQueue: with every slot held, health checks,
// small requests, long polls, WebSocket upgrades and the internal
// listener's publishes are all served.
func TestOnlyLargePublicBodiesQueue(t *testing.T) {
	// A queued request would be refused after the short body-read timeout,
	// which the checks below tell from being served.
	r, _ := startHeld(t, 1, 2*time.Second, nil)
	client := &http.Client{Timeout: 60 * time.Second}
	if code, body := get(t, r.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d %s", code, body)
	}
	// Just at the threshold: not large.
	_, br := sendHead(t, r.URL, "/rest/pull.application.config.get", fmt.Sprintf("Content-Length: %d\r\n", largeBody),
		bytes.Repeat([]byte(" "), largeBody))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		t.Fatalf("a %d-byte body was queued: %d", largeBody, resp.StatusCode)
	}
	// The trusted publish route never queues, however large its body.
	ch := "fb9f7e13dc3d595c5aefe1a0216c27a2"
	marker := strings.Repeat("m", 200<<10)
	resp, err = client.Post(r.Internal+"/pub/?CHANNEL_ID="+ch, "application/json", strings.NewReader(`{"text":"`+marker+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a large /pub/ on the internal listener: %d", resp.StatusCode)
	}
	signed := url.QueryEscape(channel.NewSigner([]byte("SECRET"), channel.SHA1).SignChannel(mustParse(t, ch)))
	code, body := get(t, r.URL+"/sub/?CHANNEL_ID="+signed+"&mid=00000000000000000000000000")
	if code != http.StatusOK || !strings.Contains(body, marker) {
		t.Fatalf("long poll: %d, %d bytes without the published message", code, len(body))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, _, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(r.URL, "http")+"/sub/?CHANNEL_ID="+signed)
	if err != nil {
		t.Fatalf("WebSocket upgrade: %v", err)
	}
	conn.Close()
}

func TestNeedsSlot(t *testing.T) {
	for _, tc := range []struct {
		length int64
		body   io.ReadCloser
		want   bool
	}{
		{0, http.NoBody, false},
		{largeBody, io.NopCloser(nil), false},
		{largeBody + 1, io.NopCloser(nil), true},
		{-1, io.NopCloser(nil), true},
	} {
		r := &http.Request{ContentLength: tc.length, Body: tc.body}
		if got := needsSlot(r); got != tc.want {
			t.Errorf("Content-Length %d: %v, want %v", tc.length, got, tc.want)
		}
	}
}

// TestLargeRequestsHandledInTurn: of the admitted large requests, those
// whose body is read are handled one at a time (the handlers of an
// admission of one), while a large request whose handler never reads its
// body is answered meanwhile.
func TestLargeRequestsHandledInTurn(t *testing.T) {
	a := newAdmission(4, 1, time.Hour, testkit.Logger())
	turnQueued := make(chan struct{}, 4)
	a.turnQueued = func() { turnQueued <- struct{}{} }
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	var inHandler, most atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("POST /read", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := inHandler.Add(1)
		defer inHandler.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		entered <- struct{}{}
		<-release
	})
	mux.HandleFunc("POST /noread", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	srv := httptest.NewServer(a.wrap(mux))
	t.Cleanup(srv.Close)
	// Before the server's close, which waits for the handlers.
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	body := bytes.Repeat([]byte("x"), 2*largeBody)
	post := func(path string) <-chan int {
		code := make(chan int, 1)
		go func() {
			resp, err := http.Post(srv.URL+path, "application/octet-stream", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				code <- 0
				return
			}
			resp.Body.Close()
			code <- resp.StatusCode
		}()
		return code
	}
	var answers []<-chan int
	for range 3 {
		answers = append(answers, post("/read"))
	}
	// One is handled; the other two wait with their bodies read.
	for in, queued := 0, 0; in < 1 || queued < 2; {
		select {
		case <-entered:
			if in++; in > 1 {
				t.Fatal("two large requests were handled at once")
			}
		case <-turnQueued:
			queued++
		}
	}
	if code := <-post("/noread"); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a large request whose handler reads nothing, with the turn held: %d", code)
	}
	releaseAll()
	for _, c := range answers {
		if code := <-c; code != http.StatusOK {
			t.Errorf("answer %d", code)
		}
	}
	if m := most.Load(); m != 1 {
		t.Errorf("%d handlers at once, want 1", m)
	}
	if len(a.handlers) != 0 || len(a.slots) != 0 {
		t.Errorf("%d turns and %d slots still held", len(a.handlers), len(a.slots))
	}
}
