package interop

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pageEmit is what browserpage/pull.js reports.
type pageEmit struct {
	Kind     string          `json:"kind"`
	Status   string          `json:"status"`
	Client   bool            `json:"client"`
	ModuleID string          `json:"module_id"`
	Command  string          `json:"command"`
	Params   json.RawMessage `json:"params"`
	MID      string          `json:"mid"`
	raw      json.RawMessage
}

func decodeEmit(t *testing.T, d json.RawMessage) pageEmit {
	t.Helper()
	var e pageEmit
	if err := json.Unmarshal(d, &e); err != nil {
		t.Fatalf("page emitted %s: %v", d, err)
	}
	e.raw = d
	return e
}

// waitKind waits for the page's next report of kind.
func (p *Page) waitKind(ctx context.Context, kind string, match func(pageEmit) bool) pageEmit {
	p.t.Helper()
	var got pageEmit
	p.waitEmit(ctx, kind, func(d json.RawMessage) bool {
		got = decodeEmit(p.t, d)
		return got.Kind == kind && (match == nil || match(got))
	})
	return got
}

// nextPageMessage is the next message the page's client received; any other
// message before it fails the test.
func (p *Page) nextPageMessage(ctx context.Context, fromClient bool, moduleID, command, params string) {
	p.t.Helper()
	e := p.waitKind(ctx, "message", nil)
	var got, want any
	if err := json.Unmarshal(e.Params, &got); err != nil {
		p.t.Fatalf("params %s: %v", e.Params, err)
	}
	if err := json.Unmarshal([]byte(params), &want); err != nil {
		p.t.Fatal(err)
	}
	if e.Client != fromClient || e.ModuleID != moduleID || e.Command != command || !reflect.DeepEqual(got, want) {
		p.t.Fatalf("%s: got %s, want a message %s/%s %s (from a client: %v)", p.name, e.raw, moduleID, command, params, fromClient)
	}
	if !midPattern.MatchString(e.MID) {
		p.t.Fatalf("%s: client session mid %q is not 26 digits", p.name, e.MID)
	}
}

// TestBrowserPullClient runs the official client's browser build (the UMD
// bundle of @bitrix24/b24jssdk) in headless Chromium, on a page served from
// another origin than the server, through the protocol versions and
// transports a browser uses. Each page fetches its config cross-origin with
// the SDK's own B24OAuth, receives events sent through REST to the shared
// channel and to its user, and (versions 4 and 5, where the SDK publishes)
// a message it sends as a client. Any console error, uncaught exception or
// refused request in a page fails the test.
func TestBrowserPullClient(t *testing.T) {
	b := startBrowser(t)
	t.Logf("browser: Chromium %s", b.Version)
	origin := serveFiles(t, map[string]string{
		"/":            "browserpage/pull.html",
		"/pull.js":     "browserpage/pull.js",
		"/b24jssdk.js": "node_modules/@bitrix24/b24jssdk/dist/umd/index.min.js",
	})
	cases := []struct {
		name        string
		version     string
		longPolling bool
		// refresh starts the page with an expired access token: B24OAuth
		// refreshes it at /oauth/token/, cross-origin, before anything else.
		refresh bool
	}{
		{name: "v4-websocket", version: "4", refresh: true},
		{name: "v4-longpolling", version: "4", longPolling: true},
		{name: "v5-websocket", version: "5"},
		{name: "v3-longpolling", version: "3", longPolling: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			f := newRESTFixture(t, tc.version)
			p := b.open(t, ctx, tc.name, origin+"/")

			expires := time.Now().Add(time.Hour).Unix()
			if tc.refresh {
				expires = 0
			}
			opts, err := json.Marshal(map[string]any{
				"userId": 1, "restApplication": "pushpull.browser", "forceLongPolling": tc.longPolling,
				"oauth": map[string]any{
					"options": map[string]any{
						"accessToken": f.token, "refreshToken": f.refresh, "expires": expires, "expiresIn": 3600,
						"clientEndpoint": f.srv.base + "/rest/", "serverEndpoint": f.srv.base + "/rest/",
						"domain": f.srv.base, "memberId": f.memberID, "scope": "pull", "status": "L",
					},
					"secret": map[string]string{"clientId": f.app.ClientID, "clientSecret": f.app.ClientSecret},
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			p.eval(ctx, "startPull("+string(opts)+")", nil)
			if tc.refresh {
				p.waitKind(ctx, "refresh", nil)
			}
			p.waitKind(ctx, "status", func(e pageEmit) bool { return e.Status == "online" })
			// The client is online before start() resolves: wait for both,
			// so its logger is in place for what follows.
			p.waitKind(ctx, "started", nil)
			checkTransport(t, ctx, p, tc.version, tc.longPolling)

			// The administrator (user 2) sends: user 1's token may have been
			// rotated by the page's refresh.
			send := func(form url.Values) {
				t.Helper()
				form.Set("auth", f.adminToken)
				if code, body := postJSON(t, f.srv.base+"/rest/pull.application.event.add", form); code != 200 || body["result"] != true {
					t.Fatalf("event.add %v: %d %v", form, code, body)
				}
			}
			send(url.Values{"COMMAND": {"toShared"}, "PARAMS[n]": {"1"}})
			p.nextPageMessage(ctx, false, "application", "toShared", `{"n":"1"}`)
			send(url.Values{"COMMAND": {"toUser"}, "USER_ID": {"1"}, "MODULE_ID": {"my.app"}, "PARAMS": {`{"s":"привет"}`}})
			p.nextPageMessage(ctx, false, "my.app", "toUser", `{"s":"привет"}`)

			switch tc.version {
			case "4":
				// Version 4 clients send to public channels: the page sends
				// to its own user's channel of this application, over its
				// WebSocket or, long polling, by POST to /pubweb/.
				var channel string
				p.eval(ctx, `appChannel(1)`, &channel)
				p.eval(ctx, `send('sendMessageToChannels', [[`+strconv.Quote(channel)+`], 'application', 'fromPage', {n: 3, s: 'два'}])`, nil)
				p.nextPageMessage(ctx, true, "application", "fromPage", `{"n":3,"s":"два"}`)
				// A POST with a Content-Type passes /pubweb/'s preflight.
				var answer struct {
					Status int    `json:"status"`
					Body   string `json:"body"`
				}
				p.eval(ctx, `publishLabelled(`+strconv.Quote(channel)+`, 'application', 'labelled', {n: 4})`, &answer)
				if answer.Status != 200 {
					t.Fatalf("labelled POST to /pubweb/: %+v", answer)
				}
				p.nextPageMessage(ctx, true, "application", "labelled", `{"n":4}`)
			case "5":
				// Version 5 clients send to users.
				p.eval(ctx, `send('sendMessage', [[1], 'application', 'fromPage', {n: 3, s: 'два'}])`, nil)
				p.nextPageMessage(ctx, true, "application", "fromPage", `{"n":3,"s":"два"}`)
			}
			// Nothing else arrived: the next message is the one sent last.
			send(url.Values{"COMMAND": {"sentinel"}, "USER_ID": {"1"}})
			p.nextPageMessage(ctx, false, "application", "sentinel", `{}`)
		})
	}
}

// checkTransport checks, with the SDK's own debug report, that the page's
// client is connected the way the case means: long polling although the
// browser supports WebSocket, or WebSocket in the version's format.
func checkTransport(t *testing.T, ctx context.Context, p *Page, version string, longPolling bool) {
	t.Helper()
	var info map[string]any
	p.eval(ctx, `pull.getDebugInfo()`, &info)
	path, _ := info["Path"].(string)
	want := map[string]any{"Connect": "Y", "WebSocket supported": "Y", "WebSocket connected": "Y",
		"WebSocket mode": map[string]string{"4": "protobuf", "5": "json-rpc"}[version]}
	scheme := "ws://"
	if longPolling {
		want["WebSocket connected"], want["WebSocket mode"], scheme = "N", "-", "http://"
	}
	for k, v := range want {
		if info[k] != v {
			t.Fatalf("the client's debug info has %q = %v, want %v: %v", k, info[k], v, info)
		}
	}
	if !strings.HasPrefix(path, scheme) {
		t.Fatalf("the client is connected at %q, want a %s URL", path, scheme)
	}
}
