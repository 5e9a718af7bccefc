package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/redistest"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/testkit"
	"github.com/pushpull/pushpull/internal/wire"
)

const consoleToken = "operator-token-0123456789"

func consoleConfig(t *testing.T, token string) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECURITYKEY123456"
	cfg.ConsoleToken = token
	// An empty history answers when the poll times out.
	cfg.PollTimeout = time.Second
	return cfg
}

// consoleDo sends a request to the console and decodes its JSON answer.
func consoleDo(t *testing.T, c *http.Client, method, u string, body any, header http.Header) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %v", method, u, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

func bearer() http.Header { return http.Header{"Authorization": {"Bearer " + consoleToken}} }

// history reads what a new long-polling subscriber of ch is replayed.
func history(t *testing.T, r *testkit.Server, cfg config.Config, ch channel.ID) []wire.TextFrame {
	t.Helper()
	signed := channel.NewSigner([]byte(cfg.SignatureKey), channel.SHA1).SignChannel(ch)
	code, body := get(t, r.URL+"/sub/?CHANNEL_ID="+url.QueryEscape(signed)+"&mid=00000000000000000000000000")
	if code == http.StatusNotModified {
		return nil
	}
	if code != 200 {
		t.Fatalf("sub: %d %q", code, body)
	}
	frames, err := wire.ParseTextFrames([]byte(body))
	if err != nil {
		t.Fatalf("sub: %v in %q", err, body)
	}
	return frames
}

func TestConsoleIsReadOnlyWithoutToken(t *testing.T) {
	cfg := consoleConfig(t, "")
	r := start(t, cfg)
	ch, _ := channel.ParseID("0123456789abcdef0123456789abcdef")

	code, page := get(t, r.Internal+"/console/")
	if code != 200 || !strings.Contains(page, "pushpull console") {
		t.Fatalf("page: %d %.200q", code, page)
	}
	if code, _ := get(t, r.URL+"/console/"); code == 200 {
		t.Fatal("the console is served on the public listener")
	}
	code, s := consoleDo(t, nil, "GET", r.Internal+"/console/api/session", nil, nil)
	if code != 200 || s["readOnly"] != true {
		t.Fatalf("session: %d %v", code, s)
	}
	code, ov := consoleDo(t, nil, "GET", r.Internal+"/console/api/overview", nil, nil)
	if code != 200 || ov["connections"] == nil {
		t.Fatalf("overview: %d %v", code, ov)
	}
	send := map[string]any{"channels": []string{ch.String()}, "moduleId": "console", "command": "test", "expiry": 60}
	for _, tc := range []struct {
		path string
		body any
	}{
		{"send", send},
		{"tokens/revoke", map[string]string{"id": strings.Repeat("a", 64)}},
		{"login", map[string]string{"token": ""}},
	} {
		// Even with a would-be credential: there is none to match.
		code, out := consoleDo(t, nil, "POST", r.Internal+"/console/api/"+tc.path, tc.body, bearer())
		if code != 403 || out["error"] != "READ_ONLY" {
			t.Errorf("%s: %d %v, want 403 READ_ONLY", tc.path, code, out)
		}
	}
	if frames := history(t, r, cfg, ch); len(frames) != 0 {
		t.Fatalf("a read-only console published: %v", frames)
	}
}

func TestConsoleRefusesCrossSiteActions(t *testing.T) {
	cfg := consoleConfig(t, consoleToken)
	r := start(t, cfg)
	ch, _ := channel.ParseID("0123456789abcdef0123456789abcdef")
	send := map[string]any{"channels": []string{ch.String()}, "moduleId": "console", "command": "test", "expiry": 60}
	api := r.Internal + "/console/api/"

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	// A login from another site is refused before the token is looked at.
	code, out := consoleDo(t, browser, "POST", api+"login", map[string]string{"token": consoleToken},
		http.Header{"Origin": {"https://evil.example"}})
	if code != 403 || out["error"] != "CROSS_SITE" {
		t.Fatalf("cross-site login: %d %v", code, out)
	}
	if code, out := consoleDo(t, browser, "POST", api+"login", map[string]string{"token": "wrong-token-0123456789"}, nil); code != 403 || out["error"] != "WRONG_TOKEN" {
		t.Fatalf("wrong token: %d %v", code, out)
	}
	code, out = consoleDo(t, browser, "POST", api+"login", map[string]string{"token": consoleToken}, nil)
	csrf, _ := out["csrf"].(string)
	if code != 200 || csrf == "" {
		t.Fatalf("login: %d %v", code, out)
	}
	u, _ := url.Parse(api)
	for _, ck := range jar.Cookies(u) {
		if strings.Contains(ck.Value, consoleToken) {
			t.Fatal("the session cookie carries the token")
		}
	}

	refused := []struct {
		name   string
		client *http.Client
		header http.Header
		want   string
	}{
		{"cookie without the csrf header (a cross-site form)", browser, nil, "CROSS_SITE"},
		{"cookie with a wrong csrf header", browser, http.Header{"X-Console-Csrf": {"00"}}, "CROSS_SITE"},
		{"another Origin", browser, http.Header{"X-Console-Csrf": {csrf}, "Origin": {"https://evil.example"}}, "CROSS_SITE"},
		{"Sec-Fetch-Site cross-site", browser, http.Header{"X-Console-Csrf": {csrf}, "Sec-Fetch-Site": {"cross-site"}}, "CROSS_SITE"},
		{"bearer from another site", nil, http.Header{"Authorization": {"Bearer " + consoleToken}, "Sec-Fetch-Site": {"same-site"}}, "CROSS_SITE"},
		{"wrong bearer", nil, http.Header{"Authorization": {"Bearer wrong-token-0123456789"}}, "OPERATOR_REQUIRED"},
		{"no credential", nil, nil, "OPERATOR_REQUIRED"},
	}
	for _, tc := range refused {
		code, out := consoleDo(t, tc.client, "POST", api+"send", send, tc.header)
		if code != 403 || out["error"] != tc.want {
			t.Errorf("%s: %d %v, want 403 %s", tc.name, code, out, tc.want)
		}
	}
	if frames := history(t, r, cfg, ch); len(frames) != 0 {
		t.Fatalf("a refused request published: %v", frames)
	}
	// The page's own request: same origin, cookie and csrf header.
	origin := "http://" + u.Host
	if code, out := consoleDo(t, browser, "POST", api+"send", send,
		http.Header{"X-Console-Csrf": {csrf}, "Origin": {origin}, "Sec-Fetch-Site": {"same-origin"}}); code != 200 {
		t.Fatalf("same-origin send: %d %v", code, out)
	}
	if frames := history(t, r, cfg, ch); len(frames) != 1 {
		t.Fatalf("after the page's send: %v", frames)
	}
}

func TestConsoleSendPublishes(t *testing.T) {
	cfg := consoleConfig(t, consoleToken)
	r := start(t, cfg)
	ch, _ := channel.ParseID("00112233445566778899aabbccddeeff")
	api := r.Internal + "/console/api/"

	bad := []map[string]any{
		{"channels": []string{ch.String()}, "moduleId": "Bad Module", "command": "test", "expiry": 60},
		{"channels": []string{ch.String()}, "moduleId": "console", "command": "", "expiry": 60},
		{"channels": []string{"not-a-channel"}, "moduleId": "console", "command": "test", "expiry": 60},
		{"channels": []string{ch.String()}, "moduleId": "console", "command": "test"},
		{"channels": []string{ch.String()}, "moduleId": "console", "command": "test", "expiry": -1},
		{"channels": []string{ch.String()}, "moduleId": "console", "command": "test", "expiry": 60, "params": "text"},
		{"moduleId": "console", "command": "test", "expiry": 60},
		{"channels": []string{ch.String()}, "moduleId": "console", "command": "test", "expiry": 60, "extra": true},
	}
	for _, b := range bad {
		if code, out := consoleDo(t, nil, "POST", api+"send", b, bearer()); code != 400 || out["error"] != "INVALID_REQUEST" {
			t.Errorf("%v: %d %v, want 400 INVALID_REQUEST", b, code, out)
		}
	}
	if frames := history(t, r, cfg, ch); len(frames) != 0 {
		t.Fatalf("bad input published: %v", frames)
	}

	// Pasted the way clients hold a shared channel: "id.signature".
	signed := channel.NewSigner([]byte(cfg.SignatureKey), channel.SHA1).SignChannel(ch)
	code, out := consoleDo(t, nil, "POST", api+"send", map[string]any{
		"channels": []string{signed}, "moduleId": "console", "command": "hello",
		"params": map[string]any{"n": 1}, "expiry": 60}, bearer())
	if code != 200 || out["mid"] == nil {
		t.Fatalf("send: %d %v", code, out)
	}
	frames := history(t, r, cfg, ch)
	if len(frames) != 1 || frames[0].MID != out["mid"] {
		t.Fatalf("history after send: %v, want mid %v", frames, out["mid"])
	}
	var body struct {
		ModuleID string         `json:"module_id"`
		Command  string         `json:"command"`
		Params   map[string]any `json:"params"`
		Extra    map[string]any `json:"extra"`
	}
	if err := json.Unmarshal(frames[0].Text, &body); err != nil || body.ModuleID != "console" || body.Command != "hello" ||
		body.Params["n"] != 1.0 || body.Extra["server_time_unix"] == nil {
		t.Fatalf("body %s: %v", frames[0].Text, err)
	}

	// The channel page lists it, newest first, with its mid.
	code, info := consoleDo(t, nil, "GET", api+"channel?channel="+url.QueryEscape(signed), nil, nil)
	hist, _ := info["history"].([]any)
	if code != 200 || len(hist) != 1 || hist[0].(map[string]any)["mid"] != out["mid"] || hist[0].(map[string]any)["command"] != "hello" {
		t.Fatalf("channel: %d %v", code, info)
	}
	if code, out := consoleDo(t, nil, "GET", api+"channel?channel=xyz", nil, nil); code != 400 || out["error"] != "INVALID_REQUEST" {
		t.Fatalf("bad channel: %d %v", code, out)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

func readEvents(t *testing.T, body io.Reader) <-chan sseEvent {
	t.Helper()
	out := make(chan sseEvent, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out
}

func nextEvent(t *testing.T, evs <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-evs:
		if !ok {
			t.Fatal("the tail stream ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event from the tail")
	}
	return sseEvent{}
}

func TestConsoleTailReceivesPublished(t *testing.T) {
	cfg := consoleConfig(t, "")
	r := start(t, cfg)
	ch, _ := channel.ParseID("fb9f7e13dc3d595c5aefe1a0216c27a2")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", r.Internal+"/console/api/tail?channel="+ch.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("tail: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	evs := readEvents(t, resp.Body)
	if ev := nextEvent(t, evs); ev.name != "ready" {
		t.Fatalf("first event %v", ev)
	}
	// Attached from here on: a backend publish is in the stream.
	pub, err := http.Post(r.Internal+"/pub/?CHANNEL_ID="+ch.String(), "application/json",
		strings.NewReader(`{"module_id":"im","command":"message","params":{"text":"hi"}}`))
	if err != nil || pub.StatusCode != 200 {
		t.Fatalf("publish: %v %v", pub, err)
	}
	pub.Body.Close()
	ev := nextEvent(t, evs)
	var m struct {
		MID      string         `json:"mid"`
		ModuleID string         `json:"moduleId"`
		Command  string         `json:"command"`
		Body     map[string]any `json:"body"`
		Channel  string         `json:"channel"`
	}
	if ev.name != "message" || json.Unmarshal([]byte(ev.data), &m) != nil || m.ModuleID != "im" || m.Command != "message" ||
		m.Channel != ch.String() || len(m.MID) != 26 || m.Body["params"].(map[string]any)["text"] != "hi" {
		t.Fatalf("tail event %v", ev)
	}

	if code, out := consoleDo(t, nil, "GET", r.Internal+"/console/api/tail?user=-3", nil, nil); code != 400 || out["error"] != "INVALID_REQUEST" {
		t.Fatalf("bad user: %d %v", code, out)
	}
}

func TestConsoleRevokeMakesRESTRefuseToken(t *testing.T) {
	cfg := consoleConfig(t, consoleToken)
	var s *Server
	r := startWith(t, cfg, func(srv *Server) { s = srv })
	_, tok := appUserToken(t, s.store, false)
	restCall := func() (int, map[string]any) {
		return call(t, r.URL+"/rest/pull.application.config.get", url.Values{"auth": {tok.AccessToken}, "CACHE": {"N"}})
	}
	if status, body := restCall(); status != 200 {
		t.Fatalf("before revoke: %d %v", status, body)
	}

	api := r.Internal + "/console/api/"
	code, reg := consoleDo(t, nil, "GET", api+"registry", nil, nil)
	if code != 200 || reg["listed"] != true {
		t.Fatalf("registry: %d %v", code, reg)
	}
	raw, _ := json.Marshal(reg)
	if strings.Contains(string(raw), tok.AccessToken) || strings.Contains(string(raw), tok.RefreshToken) {
		t.Fatal("the registry view shows a token")
	}
	tokens, _ := reg["tokens"].([]any)
	if len(tokens) != 1 || reg["tokensTotal"] != 1.0 {
		t.Fatalf("tokens: %v", reg["tokens"])
	}
	tv := tokens[0].(map[string]any)
	id, _ := tv["id"].(string)
	if id != store.HashSecret(tok.AccessToken) || tv["lastUsed"] == 0.0 || tv["revoked"] != false {
		t.Fatalf("token row %v", tv)
	}

	if code, out := consoleDo(t, nil, "POST", api+"tokens/revoke", map[string]string{"id": id}, nil); code != 403 {
		t.Fatalf("revoke without credential: %d %v", code, out)
	}
	if status, _ := restCall(); status != 200 {
		t.Fatal("a refused revoke revoked")
	}
	if code, out := consoleDo(t, nil, "POST", api+"tokens/revoke", map[string]string{"id": "ABC"}, bearer()); code != 400 {
		t.Fatalf("bad id: %d %v", code, out)
	}
	if code, out := consoleDo(t, nil, "POST", api+"tokens/revoke", map[string]string{"id": strings.Repeat("0", 64)}, bearer()); code != 404 {
		t.Fatalf("unknown id: %d %v", code, out)
	}
	if code, out := consoleDo(t, nil, "POST", api+"tokens/revoke", map[string]string{"id": id}, bearer()); code != 200 {
		t.Fatalf("revoke: %d %v", code, out)
	}
	if status, body := restCall(); status != 401 || body["error"] != "invalid_token" {
		t.Fatalf("after revoke: %d %v", status, body)
	}
}

// In a cluster a tail on one node sees what another node publishes (the
// tail's broker attach routes the channel there), the overview counts the
// live nodes and reports Redis, and the Redis registry lists for the page.
func TestConsoleInCluster(t *testing.T) {
	redis := redistest.Start(t)
	cfg := consoleConfig(t, consoleToken)
	cfg.Redis = redis.URL()
	cfg.RedisPrefix = "console-test"
	n1 := start(t, cfg)
	cfg2 := cfg
	cfg2.DataDir = t.TempDir()
	n2 := start(t, cfg2)
	ch, _ := channel.ParseID("fb9f7e13dc3d595c5aefe1a0216c27a2")

	code, ov := consoleDo(t, nil, "GET", n1.Internal+"/console/api/overview", nil, nil)
	cl, _ := ov["cluster"].(map[string]any)
	if code != 200 || cl["mode"] != "cluster" || cl["redis"] != "ok" || cl["nodes"] != 2.0 {
		t.Fatalf("overview: %d %v", code, ov["cluster"])
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n1.Internal+"/console/api/tail?channel="+ch.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	evs := readEvents(t, resp.Body)
	if ev := nextEvent(t, evs); ev.name != "ready" {
		t.Fatalf("first event %v", ev)
	}
	code, out := consoleDo(t, nil, "POST", n2.Internal+"/console/api/send", map[string]any{
		"channels": []string{ch.String()}, "moduleId": "console", "command": "acrossNodes", "expiry": 0}, bearer())
	if code != 200 {
		t.Fatalf("send on node 2: %d %v", code, out)
	}
	ev := nextEvent(t, evs)
	if ev.name != "message" || !strings.Contains(ev.data, `"command":"acrossNodes"`) || !strings.Contains(ev.data, out["mid"].(string)) {
		t.Fatalf("tail on node 1: %v, want the message sent on node 2 (%v)", ev, out["mid"])
	}

	code, reg := consoleDo(t, nil, "GET", n2.Internal+"/console/api/registry", nil, nil)
	if code != 200 || reg["listed"] != true {
		t.Fatalf("registry in cluster mode: %d %v", code, reg)
	}
}

// A version 5 user can be tailed, and the Send form reaches users.
func TestConsoleTailsAUser(t *testing.T) {
	cfg := consoleConfig(t, consoleToken)
	r := start(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", r.Internal+"/console/api/tail?user=5", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	evs := readEvents(t, resp.Body)
	if ev := nextEvent(t, evs); ev.name != "ready" {
		t.Fatalf("first event %v", ev)
	}
	code, out := consoleDo(t, nil, "POST", r.Internal+"/console/api/send", map[string]any{
		"users": []int64{6, 5}, "moduleId": "im", "command": "toUsers", "expiry": 0}, bearer())
	if code != 200 || out["receivers"] != 2.0 {
		t.Fatalf("send to users: %d %v", code, out)
	}
	if ev := nextEvent(t, evs); ev.name != "message" || !strings.Contains(ev.data, `"command":"toUsers"`) {
		t.Fatalf("user tail: %v", ev)
	}
	code, info := consoleDo(t, nil, "GET", r.Internal+"/console/api/channel?user=5", nil, nil)
	if code != 200 || info["user"] != 5.0 || info["userOnline"] != 0.0 || info["subscribers"] != 1.0 {
		t.Fatalf("user lookup: %d %v", code, info)
	}
	if code, out := consoleDo(t, nil, "POST", r.Internal+"/console/api/send", map[string]any{
		"users": []int64{0}, "moduleId": "im", "command": "toUsers", "expiry": 0}, bearer()); code != 400 {
		t.Fatalf("user 0: %d %v", code, out)
	}
}

// A page whose own name was rebound to the console's address reads the
// console as same-origin, but its requests name that page's host: the
// console answers only to addresses, localhost and --console-hosts.
func TestConsoleRefusesUnknownHostNames(t *testing.T) {
	cfg := consoleConfig(t, consoleToken)
	cfg.ConsoleHosts = []string{"push-admin.example.org"}
	r := start(t, cfg)
	port := strings.TrimPrefix(r.Internal[strings.LastIndexByte(r.Internal, ':'):], ":")
	for _, tc := range []struct {
		host string
		want int
	}{
		{"attacker.example:" + port, http.StatusMisdirectedRequest},
		{"127.0.0.1.attacker.example", http.StatusMisdirectedRequest},
		{"localhost:" + port, http.StatusOK},
		{"127.0.0.1:" + port, http.StatusOK},
		{"[::1]:" + port, http.StatusOK},
		{"PUSH-ADMIN.example.org:" + port, http.StatusOK},
	} {
		for _, path := range []string{"/console/", "/console/api/overview"} {
			req, err := http.NewRequest("GET", r.Internal+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s with Host %s: %d; want %d", path, tc.host, resp.StatusCode, tc.want)
			}
			if tc.want != http.StatusOK && (strings.Contains(string(body), "deliveries") || !strings.Contains(string(body), "UNKNOWN_HOST")) {
				t.Errorf("GET %s with Host %s answered %.200q; want only the refusal", path, tc.host, body)
			}
		}
	}
	// Metrics and the other internal routes are not the console's: a
	// scraper may name the node however it likes.
	req, _ := http.NewRequest("GET", r.Internal+"/healthz", nil)
	req.Host = "pushpull-1.monitoring"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz by name: %d", resp.StatusCode)
	}
}
