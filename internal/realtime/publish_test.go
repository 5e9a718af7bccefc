package realtime

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

// TestPublishErrors runs every refused publish against a version 3 server,
// which answers with Push server 1.0's texts, and versions 4 and 5, which
// answer as Push server 2.x does: 200 and nothing published for a missing
// or bad channel list and an empty body.
func TestPublishErrors(t *testing.T) {
	for _, version := range []int{3, 4, 5} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) { testPublishErrors(t, version) })
	}
}

func testPublishErrors(t *testing.T, version int) {
	ts := newTestServer(t, func(o *Options) { o.MaxPayload = 1000; o.ServerVersion = version })
	ch := newChannel(t)
	many := make([]string, 101)
	for i := range many {
		many[i] = newChannel(t).String()
	}
	type answer struct {
		code int
		text string
	}
	v3 := func(code int, text string) answer {
		if version == 3 {
			return answer{code, text}
		}
		return answer{200, ""}
	}
	big := `"` + strings.Repeat("x", 2000) + `"`
	cases := []struct {
		name, query, body string
		header            map[string]string
		chunked           bool
		want              answer
	}{
		{"no channel", "", `{}`, nil, false, v3(400, "No channel id provided.")},
		{"only slashes", "CHANNEL_ID=//", `{}`, nil, false, v3(400, "Channel id is not correct.")},
		{"bad channel", "CHANNEL_ID=xyz", `{}`, nil, false, v3(400, "Channel id is not correct.")},
		{"one bad of two", "CHANNEL_ID=" + ch.String() + "/" + ch.String()[1:], `{}`, nil, false, v3(400, "Channel id is not correct.")},
		{"wrong signature", "CHANNEL_ID=" + ch.String() + "." + strings.Repeat("0", 40), `{}`, nil, false, v3(400, "Channel id is not correct.")},
		{"too many", "CHANNEL_ID=" + strings.Join(many, "/"), `{}`, nil, false, answer{400, "4018: Request exceeded the maximum number of channels."}},
		{"empty", "CHANNEL_ID=" + ch.String(), ``, nil, false, v3(400, "Empty post requests are not allowed.")},
		{"not utf-8", "CHANNEL_ID=" + ch.String(), "\"\xcd\"", nil, false, answer{400, "4013: Wrong Request Data."}},
		{"not utf-8, not json", "CHANNEL_ID=" + ch.String(), "caf\xe9", nil, false, answer{400, "4013: Wrong Request Data."}},
		{"bad expiry", "CHANNEL_ID=" + ch.String(), `{}`, map[string]string{"Message-Expiry": "soon"}, false, answer{400, "Message-Expiry must be a whole number of seconds."}},
		{"negative expiry", "CHANNEL_ID=" + ch.String(), `{}`, map[string]string{"Message-Expiry": "-5"}, false, answer{400, "Message-Expiry must be a whole number of seconds."}},
		{"too big", "CHANNEL_ID=" + ch.String(), big, nil, false, answer{413, ""}},
		{"too big chunked", "CHANNEL_ID=" + ch.String(), big, nil, true, answer{413, ""}},
		// Push server 2.x reads the body before it looks at the channels.
		{"too big chunked, no channel", "", big, nil, true, v3(400, "No channel id provided.")},
	}
	if version > 3 {
		cases[len(cases)-1].want = answer{413, ""}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/pub/?"+tc.query, body)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			code, text := do(t, req)
			if code != tc.want.code || text != tc.want.text {
				t.Fatalf("got %d %q, want %d %q", code, text, tc.want.code, tc.want.text)
			}
		})
	}
	// Nothing was stored by any of them.
	if s := ts.broker.Stats(); s.Messages != 0 {
		t.Fatalf("refused publishes stored %d messages", s.Messages)
	}
}

func TestPublishExpiryAndSignedChannels(t *testing.T) {
	ts := newTestServer(t, nil)
	a, b := newChannel(t), newChannel(t)
	// Backends may send signed ids too; a private:public pair publishes to
	// the private channel.
	q := "CHANNEL_ID=" + ts.signer.SignChannel(a) + "/" + ts.signer.SignPrivate(b, newChannel(t))
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/pub/?"+q, strings.NewReader(`{"x":1}`))
	req.Header.Set("Message-Expiry", "120")
	if code, text := do(t, req); code != 200 || text != "" {
		t.Fatalf("publish: %d %q", code, text)
	}
	got, err := ts.broker.History(t.Context(), []channel.ID{a, b}, zeroID(), ts.rt.opt.Replay)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Msg.Expiry != 120 || got[1].Msg.Expiry != 120 {
		t.Fatalf("stored %+v; want 2 entries with expiry 120", got)
	}
	// Expiry over the cap is capped; 0 means the cap.
	for header, want := range map[string]uint32{"999999": 86400, "0": 86400} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/pub/?CHANNEL_ID="+a.String(), strings.NewReader(`{}`))
		req.Header.Set("Message-Expiry", header)
		if code, _ := do(t, req); code != 200 {
			t.Fatal(code)
		}
		last, _, err := ts.broker.LastID(t.Context(), []channel.ID{a})
		if err != nil {
			t.Fatal(err)
		}
		h, err := ts.broker.History(t.Context(), []channel.ID{a}, zeroID(), ts.rt.opt.Replay)
		if err != nil || len(h) == 0 {
			t.Fatalf("history after Message-Expiry %s: %+v %v", header, h, err)
		}
		if m := h[len(h)-1].Msg; m.ID != last || m.Expiry != want {
			t.Fatalf("Message-Expiry %s stored with %d, want %d", header, m.Expiry, want)
		}
	}
}

func TestChannelStats(t *testing.T) {
	ts := newTestServer(t, nil)
	on, off := newChannel(t), newChannel(t)
	ts.dial(t, ts.subQuery([]channel.ID{on}, ""))
	ts.dial(t, ts.subQuery([]channel.ID{on}, ""))
	ts.waitSubscribers(t, on, 2)

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/pub/?CHANNEL_ID="+on.String()+"/"+off.String(), nil)
	code, body := do(t, req)
	if code != 200 || body != `{"infos":[{"channel":"`+on.String()+`","subscribers":2}]}` {
		t.Fatalf("stats: %d %s", code, body)
	}
	req, _ = http.NewRequest(http.MethodGet, ts.URL+"/pub/", nil)
	if code, body := do(t, req); code != 400 || body != "4017: No channels found." {
		t.Fatalf("empty stats: %d %q", code, body)
	}
	// A version 4 server drops a list with a bad element and finds none;
	// version 3 says the id is not correct.
	for version, want := range map[int]string{4: "4017: No channels found.", 3: "Channel id is not correct."} {
		ts := newTestServer(t, func(o *Options) { o.ServerVersion = version })
		req, _ = http.NewRequest(http.MethodGet, ts.URL+"/pub/?CHANNEL_ID="+on.String()+"/xyz", nil)
		if code, body := do(t, req); code != 400 || body != want {
			t.Fatalf("v%d bad stats: %d %q", version, code, body)
		}
	}
}

func TestServerStat(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	ts.dial(t, ts.subQuery([]channel.ID{ch}, ""))
	ts.waitSubscribers(t, ch, 1)
	ts.waitWebSockets(t, 1)
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/server-stat/", nil)
	code, body := do(t, req)
	var stats []map[string]any
	if err := json.Unmarshal([]byte(body), &stats); code != 200 || err != nil || len(stats) != 1 {
		t.Fatalf("server-stat: %d %q %v", code, body, err)
	}
	s := stats[0]
	// A missing or mistyped field reads as NaN, which fails every check
	// here instead of panicking in the type assertion.
	num := func(k string) float64 {
		if f, ok := s[k].(float64); ok {
			return f
		}
		return math.NaN()
	}
	if !(num("pid") > 0) || !(num("date") > 0) || num("websockets") != 1 || num("channels") != 1 || num("pollings") != 0 {
		t.Fatalf("server-stat = %v", s)
	}
}

// A client that sends a body over the limit and then reads the answer gets
// the 413, not a reset: the server reads what it refuses (up to a bound)
// before it closes. Closing with unread data resets the connection, which
// happened in about a third of the tries.
func TestOversizeBodyIsAnsweredNotReset(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	addr := strings.TrimPrefix(ts.URL, "http://")
	body := bytes.Repeat([]byte("x"), int(ts.rt.opt.MaxPayload)+64<<10)
	paths := []string{
		"/pub/?CHANNEL_ID=" + ch.String(),
		"/pub/?binaryMode=true",
		"/pubweb/?CHANNEL_ID=" + url.QueryEscape(ts.signer.SignPrivate(ch, newChannel(t))),
	}
	for _, path := range paths {
		for i := range 20 {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			// A small send buffer keeps most of the body in the client while
			// the server answers, as a slower client than this one would.
			_ = conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", path, len(body))
			_, err = conn.Write(append([]byte(head), body...))
			if err != nil {
				conn.Close()
				t.Fatalf("%s, try %d: writing the body: %v", path, i, err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			conn.Close()
			if err != nil {
				t.Fatalf("%s, try %d: reading the answer: %v", path, i, err)
			}
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("%s, try %d: status %d", path, i, resp.StatusCode)
			}
		}
	}
}
