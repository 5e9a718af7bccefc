package realtime

import (
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/channel"
)

func TestPublishErrors(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.MaxPayload = 1000 })
	ch := newChannel(t)
	many := make([]string, 101)
	for i := range many {
		many[i] = newChannel(t).String()
	}
	cases := []struct {
		name, query, body string
		header            map[string]string
		chunked           bool
		code              int
		text              string
	}{
		{"no channel", "", `{}`, nil, false, 400, "No channel id provided."},
		{"bad channel", "CHANNEL_ID=xyz", `{}`, nil, false, 400, "Channel id is not correct."},
		{"one bad of two", "CHANNEL_ID=" + ch.String() + "/" + ch.String()[1:], `{}`, nil, false, 400, "Channel id is not correct."},
		{"wrong signature", "CHANNEL_ID=" + ch.String() + "." + strings.Repeat("0", 40), `{}`, nil, false, 400, "Channel id is not correct."},
		{"too many", "CHANNEL_ID=" + strings.Join(many, "/"), `{}`, nil, false, 400, "4018: Request exceeded the maximum number of channels."},
		{"empty", "CHANNEL_ID=" + ch.String(), ``, nil, false, 400, "Empty post requests are not allowed."},
		{"not json", "CHANNEL_ID=" + ch.String(), `hello`, nil, false, 400, "Message body is not valid JSON."},
		{"not utf-8", "CHANNEL_ID=" + ch.String(), "\"\xcd\"", nil, false, 400, "Message body is not valid JSON."},
		{"bad expiry", "CHANNEL_ID=" + ch.String(), `{}`, map[string]string{"Message-Expiry": "soon"}, false, 400, "Message-Expiry must be a whole number of seconds."},
		{"negative expiry", "CHANNEL_ID=" + ch.String(), `{}`, map[string]string{"Message-Expiry": "-5"}, false, 400, "Message-Expiry must be a whole number of seconds."},
		{"too big", "CHANNEL_ID=" + ch.String(), `"` + strings.Repeat("x", 2000) + `"`, nil, false, 413, ""},
		{"too big chunked", "CHANNEL_ID=" + ch.String(), `"` + strings.Repeat("x", 2000) + `"`, nil, true, 413, ""},
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
			if code != tc.code || text != tc.text {
				t.Fatalf("got %d %q, want %d %q", code, text, tc.code, tc.text)
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
