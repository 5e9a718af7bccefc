package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

const (
	mid1 = "17000000000000000000000001"
	mid2 = "17000000000000000000000002"
	mid3 = "17000000000000000000000003"
	// midLast is what a 304 says the newest message is.
	midLast = "17000000000000000000000009"
	chans   = "0123456789abcdef0123456789abcdef.aaaa/fedcba9876543210fedcba9876543210.bbbb"
)

// frame is a text frame as the server sends it (docs/protocol.md, "Wire
// formats").
func frame(id int, mid, body string) string {
	return fmt.Sprintf(`#!NGINXNMS!#{"id":%d,"mid":"%s","channel":"chan%d","tag":"016","time":"Thu, 29 Jun 2017 09:50:16 GMT","text":%s}#!NGINXNME!#`,
		id, mid, id, body)
}

// printed is the line subscribe prints for frame(id, mid, body).
func printed(id int, mid, body string) string {
	return fmt.Sprintf(`{"mid":"%s","channel":"chan%d","time":"Thu, 29 Jun 2017 09:50:16 GMT","text":%s}`, mid, id, body) + "\n"
}

const (
	body1 = `{"module_id":"test","command":"one","params":{"html":"<b>&amp;</b>"}}`
	body2 = `{"module_id":"test","command":"two","params":[]}`
	body3 = `{"module_id":"test","command":"three","params":{}}`
)

// TestSubscribeLongPoll follows a poll cycle: a 200 with two frames, a 304
// with a Last-Message-Id, then a poll during which the user interrupts.
func TestSubscribeLongPoll(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		mu     sync.Mutex
		polls  int
		errors []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		errors = append(errors, fmt.Sprintf(format, args...))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		polls++
		n := polls
		mu.Unlock()
		q := r.URL.Query()
		if r.Method != http.MethodGet || r.URL.Path != "/sub/" || q.Get("CHANNEL_ID") != chans || q.Has("format") {
			fail("poll %d: %s %s", n, r.Method, r.URL)
		}
		switch n {
		case 1:
			if q.Has("mid") {
				fail("poll 1 has mid %q", q.Get("mid"))
			}
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, frame(1, mid1, body1)+frame(2, mid2, body2))
		case 2:
			if q.Get("mid") != mid2 {
				fail("poll 2: mid %q, want the last received %s", q.Get("mid"), mid2)
			}
			w.Header().Set("Last-Message-Id", midLast)
			w.Header().Set("Expires", "Thu, 01 Jan 1973 11:11:01 GMT")
			w.WriteHeader(http.StatusNotModified)
		case 3:
			if q.Get("mid") != midLast {
				fail("poll 3: mid %q, want Last-Message-Id %s", q.Get("mid"), midLast)
			}
			cancel() // the user presses Ctrl-C while the poll is held
			<-r.Context().Done()
		default:
			fail("poll %d after cancellation", n)
		}
	}))
	defer srv.Close()

	r, stdout, stderr := testRunner(t, nil)
	code := r.main(ctx, []string{"subscribe", "--long-poll", "--url", srv.URL + "/sub/", chans})
	if code != exitOK {
		t.Errorf("exit %d, want %d; stderr: %s", code, exitOK, stderr)
	}
	if want := printed(1, mid1, body1) + printed(2, mid2, body2); stdout.String() != want {
		t.Errorf("stdout\n got %q\nwant %q", stdout, want)
	}
	if stderr.String() != "" {
		t.Errorf("stderr %q", stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range errors {
		t.Error(e)
	}
	if polls != 3 {
		t.Errorf("%d polls, want 3", polls)
	}
}

func TestSubscribeLongPollJSONFormatAndMid(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery) // polls are sequential
		if len(queries) == 1 {
			io.WriteString(w, `[{"id":3,"mid":"`+mid3+`","channel":"chan3","tag":"016","time":"Thu, 29 Jun 2017 09:50:16 GMT","text":`+body3+`}]`)
			return
		}
		cancel()
		<-r.Context().Done()
	}))
	defer srv.Close()
	r, stdout, stderr := testRunner(t, nil)
	// A ws:// URL is turned into http:// for long polling.
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	code := r.main(ctx, []string{"subscribe", "--long-poll", "--format", "json", "--mid", mid2, "--url", url, "a.b"})
	if code != exitOK {
		t.Errorf("exit %d; stderr: %s", code, stderr)
	}
	want := []string{"CHANNEL_ID=a.b&format=json&mid=" + mid2, "CHANNEL_ID=a.b&format=json&mid=" + mid3}
	if strings.Join(queries, " ") != strings.Join(want, " ") {
		t.Errorf("queries\n got %q\nwant %q", queries, want)
	}
	if want := printed(3, mid3, body3); stdout.String() != want {
		t.Errorf("stdout\n got %q\nwant %q", stdout, want)
	}
}

func TestSubscribeLongPollRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "4010: Wrong Channel Id.")
	}))
	defer srv.Close()
	r, _, stderr := testRunner(t, nil)
	if code := r.main(t.Context(), []string{"subscribe", "--long-poll", "--url", srv.URL, "x.y"}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if want := "pushpull subscribe: server refused the channels (4010: Wrong Channel Id.)\n"; stderr.String() != want {
		t.Errorf("stderr\n got %q\nwant %q", stderr, want)
	}
}

// TestSubscribeLongPollRetriesServerErrors checks that a 5xx after a
// successful poll is retried with the mid kept.
func TestSubscribeLongPollRetriesServerErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mids = append(mids, r.URL.Query().Get("mid")) // polls are sequential
		switch len(mids) {
		case 1:
			io.WriteString(w, frame(1, mid1, body1))
		case 2:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		default:
			cancel()
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	r, _, stderr := testRunner(t, nil)
	if code := r.main(ctx, []string{"subscribe", "--long-poll", "--url", srv.URL, "x.y"}); code != exitOK {
		t.Errorf("exit %d; stderr %s", code, stderr)
	}
	if strings.Join(mids, ",") != ","+mid1+","+mid1 {
		t.Errorf("mids %q", mids)
	}
	if want := "pushpull subscribe: server answered 503 Service Unavailable: overloaded; reconnecting in 5ms\n"; stderr.String() != want {
		t.Errorf("stderr\n got %q\nwant %q", stderr, want)
	}
}

// wsServer upgrades every request and hands the connection to serve with
// the connection's number, from 1.
func wsServer(t *testing.T, serve func(n int, r *http.Request, conn io.ReadWriter)) *httptest.Server {
	t.Helper()
	var (
		mu sync.Mutex
		n  int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			return
		}
		defer conn.Close()
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		serve(i, r, conn)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func closeWith(t *testing.T, conn io.Writer, code ws.StatusCode, reason string) {
	t.Helper()
	if err := ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason))); err != nil {
		t.Errorf("write close: %v", err)
	}
}

// TestSubscribeWebSocketResumes: the first connection brings two frames in
// one message and goes away; the reconnect asks for what came after the
// last mid; the server then refuses the channels, which ends subscribe.
func TestSubscribeWebSocketResumes(t *testing.T) {
	queries := make(chan string, 3)
	srv := wsServer(t, func(n int, r *http.Request, conn io.ReadWriter) {
		queries <- r.URL.RawQuery
		switch n {
		case 1:
			wsutil.WriteServerText(conn, []byte(frame(1, mid1, body1)+frame(2, mid2, body2)))
			closeWith(t, conn, ws.StatusGoingAway, "server restart")
		case 2:
			wsutil.WriteServerText(conn, []byte(frame(3, mid3, body3)))
			closeWith(t, conn, 4010, "4010: Wrong Channel Id.")
		}
		wsutil.ReadClientData(conn) // wait for the client's answer to the close
	})
	r, stdout, stderr := testRunner(t, nil)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/sub/"
	code := r.main(t.Context(), []string{"subscribe", "--url", url, chans})
	if code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if want := printed(1, mid1, body1) + printed(2, mid2, body2) + printed(3, mid3, body3); stdout.String() != want {
		t.Errorf("stdout\n got %q\nwant %q", stdout, want)
	}
	wantErr := "pushpull subscribe: server closed the connection (server restart); reconnecting in 5ms\n" +
		"pushpull subscribe: server refused the channels (4010: Wrong Channel Id.)\n"
	if stderr.String() != wantErr {
		t.Errorf("stderr\n got %q\nwant %q", stderr, wantErr)
	}
	close(queries)
	var got []string
	for q := range queries {
		got = append(got, q)
	}
	want := []string{"CHANNEL_ID=" + strings.ReplaceAll(chans, "/", "%2F"), "CHANNEL_ID=" + strings.ReplaceAll(chans, "/", "%2F") + "&mid=" + mid2}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("queries\n got %q\nwant %q", got, want)
	}
}

// TestSubscribeHonoursServerRestart: after the server_restart command the
// reconnect waits restartDelay (15 s in the real command, as the official
// clients and the README say), not the 1 s backoff of a lost connection.
func TestSubscribeHonoursServerRestart(t *testing.T) {
	const restart = `{"module_id":"pull","command":"server_restart","params":{}}`
	srv := wsServer(t, func(n int, r *http.Request, conn io.ReadWriter) {
		switch n {
		case 1:
			wsutil.WriteServerText(conn, []byte(frame(1, mid1, restart)))
			closeWith(t, conn, ws.StatusGoingAway, "server restart")
		case 2:
			closeWith(t, conn, ws.StatusGoingAway, "gone")
		default:
			closeWith(t, conn, 4010, "4010: Wrong Channel Id.")
		}
		wsutil.ReadClientData(conn)
	})
	r, _, stderr := testRunner(t, nil)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/sub/"
	if code := r.main(t.Context(), []string{"subscribe", "--url", url, chans}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	want := "pushpull subscribe: the server is restarting (server closed the connection (server restart)); reconnecting in 30ms\n" +
		"pushpull subscribe: server closed the connection (gone); reconnecting in 5ms\n" +
		"pushpull subscribe: server refused the channels (4010: Wrong Channel Id.)\n"
	if stderr.String() != want {
		t.Errorf("stderr\n got %q\nwant %q", stderr, want)
	}
}

// lineWriter signals each write, so a test can act once output appeared.
type lineWriter struct {
	syncBuffer
	wrote chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return n, err
}

// TestSubscribeWebSocketInterrupted: cancelling ctx closes the connection
// with 1000 and exits 0; pings on the way are answered.
func TestSubscribeWebSocketInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	closeCode := make(chan ws.StatusCode, 1)
	srv := wsServer(t, func(n int, r *http.Request, conn io.ReadWriter) {
		if q := r.URL.Query(); q.Get("mid") != mid1 || q.Get("format") != "json" {
			t.Errorf("query %q", r.URL.RawQuery)
		}
		ws.WriteFrame(conn, ws.NewPingFrame([]byte("hi")))
		wsutil.WriteServerText(conn, []byte(`[{"id":2,"mid":"`+mid2+`","channel":"chan2","tag":"016","time":"Thu, 29 Jun 2017 09:50:16 GMT","text":`+body2+`}]`))
		for {
			msgs, err := wsutil.ReadClientMessage(conn, nil)
			if err != nil {
				t.Errorf("read: %v", err)
				closeCode <- 0
				return
			}
			for _, m := range msgs {
				switch m.OpCode {
				case ws.OpPong:
					if string(m.Payload) != "hi" {
						t.Errorf("pong %q", m.Payload)
					}
				case ws.OpClose:
					code, _ := ws.ParseCloseFrameData(m.Payload)
					closeCode <- code
					return
				}
			}
		}
	})
	r, _, stderr := testRunner(t, nil)
	out := &lineWriter{wrote: make(chan struct{}, 1)}
	r.stdout = out
	go func() {
		select {
		case <-out.wrote:
			cancel()
		case <-time.After(10 * time.Second):
			t.Error("nothing printed")
			cancel()
		}
	}()
	// An http:// URL is turned into ws://.
	code := r.main(ctx, []string{"subscribe", "--url", srv.URL, "--format", "json", "--mid", mid1, "a.b"})
	if code != exitOK {
		t.Errorf("exit %d; stderr %s", code, stderr)
	}
	if want := printed(2, mid2, body2); out.String() != want {
		t.Errorf("stdout\n got %q\nwant %q", out.String(), want)
	}
	if got := <-closeCode; got != ws.StatusNormalClosure {
		t.Errorf("client closed with %d, want 1000", got)
	}
}

func TestSubscribeHandshakeRefused(t *testing.T) {
	// A Push server 1.0 checks the channels before the upgrade.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Bad Request", http.StatusBadRequest)
	}))
	defer srv.Close()
	r, _, stderr := testRunner(t, nil)
	if code := r.main(t.Context(), []string{"subscribe", "--url", srv.URL, "a.b"}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if want := "pushpull subscribe: server answered 400 Bad Request: Bad Request\n"; stderr.String() != want {
		t.Errorf("stderr\n got %q\nwant %q", stderr, want)
	}
}

func TestSubscribeFirstConnectionFails(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	for _, mode := range [][]string{nil, {"--long-poll"}} {
		r, _, stderr := testRunner(t, nil)
		args := append(append([]string{"subscribe"}, mode...), "--url", url, "a.b")
		if code := r.main(t.Context(), args); code != exitFailure {
			t.Errorf("%v: exit %d, want %d", mode, code, exitFailure)
		}
		if !strings.Contains(stderr.String(), "connection refused") || strings.Contains(stderr.String(), "reconnecting") {
			t.Errorf("%v: stderr %q", mode, stderr)
		}
	}
}

func TestSubscribeUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "no channels",
			args: nil,
			want: "want at least one SIGNED_CHANNEL",
		},
		{
			name: "bad mid",
			args: []string{"--mid", "123", "a.b"},
			want: `invalid --mid "123": want the 26 digits of a message id`,
		},
		{
			name: "bad format",
			args: []string{"--format", "protobuf", "a.b"},
			want: `invalid --format "protobuf": want text or json`,
		},
		{
			name: "token and channels",
			args: []string{"--token", "a.b.c", "a.b"},
			want: "--token replaces SIGNED_CHANNELs and --format: give neither",
		},
		{
			name: "token and format",
			args: []string{"--token", "a.b.c", "--format", "json"},
			want: "--token replaces SIGNED_CHANNELs and --format: give neither",
		},
		{
			name: "bad url",
			args: []string{"--url", "ftp://x/", "a.b"},
			want: `invalid --url "ftp://x/": want a ws, wss, http or https URL, like ws://127.0.0.1:8080/sub/`,
		},
		{
			name: "flag after the channels",
			args: []string{"a.b", "--long-poll"},
			want: `flags go before the arguments: move "--long-poll" to the front`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, stderr := testRunner(t, nil)
			if code := r.main(t.Context(), append([]string{"subscribe"}, tt.args...)); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			want := "pushpull subscribe: " + tt.want + "\nRun \"pushpull subscribe --help\" for usage.\n"
			if stderr.String() != want {
				t.Errorf("stderr\n got %q\nwant %q", stderr, want)
			}
		})
	}
}

// TestSubscribeJSONRPC: with --token, subscribe connects as a version 5
// client, answers the text ping, prints incoming.message notifications
// (single and batched, with user_params) and resumes from the last mid.
func TestSubscribeJSONRPC(t *testing.T) {
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
	note := func(mid, body, extra string) string {
		return `{"jsonrpc":"2.0","method":"incoming.message","params":{"mid":"` + mid + `","body":` + body + `,"sender":{"type":2}` + extra + `}}`
	}
	queries := make(chan string, 3)
	srv := wsServer(t, func(n int, r *http.Request, conn io.ReadWriter) {
		queries <- r.URL.RawQuery
		switch n {
		case 1:
			wsutil.WriteServerText(conn, []byte("ping"))
			if data, err := wsutil.ReadClientText(conn); err != nil || string(data) != "pong" {
				t.Errorf("answer to ping: %q, %v", data, err)
			}
			wsutil.WriteServerText(conn, []byte(note(mid1, body1, `,"user_params":{"u":1},"dictionary":{"d":2}`)))
			wsutil.WriteServerText(conn, []byte("["+note(mid2, body2, "")+","+note(mid3, body3, "")+"]"))
			closeWith(t, conn, ws.StatusGoingAway, "server restart")
		case 2:
			closeWith(t, conn, 4010, "4010: Wrong Channel Id.")
		}
		wsutil.ReadClientData(conn) // wait for the client's answer to the close
	})
	r, stdout, _ := testRunner(t, nil)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/sub/"
	if code := r.main(t.Context(), []string{"subscribe", "--url", url, "--token", jwt}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	want := `{"mid":"` + mid1 + `","text":` + body1 + `,"user_params":{"u":1},"dictionary":{"d":2}}` + "\n" +
		`{"mid":"` + mid2 + `","text":` + body2 + "}\n" +
		`{"mid":"` + mid3 + `","text":` + body3 + "}\n"
	if stdout.String() != want {
		t.Errorf("stdout\n got %q\nwant %q", stdout, want)
	}
	close(queries)
	var got []string
	for q := range queries {
		got = append(got, q)
	}
	if len(got) != 2 || got[0] != "jsonRpc=true&token="+jwt || got[1] != "jsonRpc=true&mid="+mid3+"&token="+jwt {
		t.Errorf("queries %q", got)
	}
}
