package server

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/auth"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/store"
)

// TestLogsHoldNoSecrets runs a whole application flow against a server
// logging at debug level: OAuth (an authorization code, then a refresh),
// config.get, a webhook call, subscriptions with signed channel ids and
// with the connection token, publishes by event.add and /pub/, and refused
// subscriptions with a forged signature and a forged token. Then the log
// must not hold any credential, signature or token the flow used, while it
// does hold one line per REST call and per refused subscription, each with
// the request id its answer carried.
func TestLogsHoldNoSecrets(t *testing.T) {
	const signatureKey = "sig-key-3f9a1c0b7e"
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = signatureKey
	cfg.ServerVersion = 5
	cfg.LogLevel = "debug"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = ln.Addr().String()
	logs := newLogCapture()
	var s *Server
	r := startOn(t, ln, cfg, logs.logger(), func(srv *Server) { s = srv })
	base := r.URL

	bg := context.Background()
	p, err := s.store.DefaultPortal(bg)
	if err != nil {
		t.Fatal(err)
	}
	app, err := s.store.CreateApp(bg, p.ID, "demo", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.store.PutUser(bg, store.User{PortalID: p.ID, ID: 3, Active: true}); err != nil {
		t.Fatal(err)
	}
	authSvc := auth.New(s.store, auth.Options{})
	code, err := authSvc.MintCode(bg, app, 3)
	if err != nil {
		t.Fatal(err)
	}
	hook, err := s.store.CreateWebhook(bg, p.ID, 3, app.ID, []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"client_secret": app.ClientSecret, "authorization code": code.Code, "webhook secret": hook.Secret, "signature key": signatureKey}

	post := func(u string, form url.Values) (map[string]any, string) {
		t.Helper()
		resp, err := http.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %v %v", u, resp.StatusCode, body, err)
		}
		return body, resp.Header.Get(requestIDHeader)
	}
	// OAuth: the code for a pair, the refresh token for the next pair.
	grant, _ := post(base+"/oauth/token/", url.Values{"grant_type": {"authorization_code"}, "client_id": {app.ClientID},
		"client_secret": {app.ClientSecret}, "code": {code.Code}})
	secrets["access token"], secrets["refresh token"] = grant["access_token"].(string), grant["refresh_token"].(string)
	next, _ := post(base+"/oauth/token/", url.Values{"grant_type": {"refresh_token"}, "client_id": {app.ClientID},
		"client_secret": {app.ClientSecret}, "refresh_token": {secrets["refresh token"]}})
	access := next["access_token"].(string)
	secrets["refreshed access token"], secrets["refreshed refresh token"] = access, next["refresh_token"].(string)

	body, configID := post(base+"/rest/pull.application.config.get", url.Values{"auth": {access}, "CACHE": {"N"}})
	result := body["result"].(map[string]any)
	secrets["connection token"] = result["jwt"].(string)
	chans := result["channels"].(map[string]any)
	var signed []string
	for _, typ := range []string{"private", "shared"} {
		id := chans[typ].(map[string]any)["id"].(string)
		signed = append(signed, id)
		if _, sig, ok := strings.Cut(id, "."); ok {
			secrets[typ+" channel signature"] = sig
		}
	}
	if _, _, ok := strings.Cut(signed[0], "."); !ok {
		t.Fatalf("config.get's channel ids are not signed: %v", signed)
	}
	// The same app through its webhook, whose secret is in the path.
	post(base+"/rest/3/"+hook.Secret+"/pull.application.config.get.json", url.Values{"CACHE": {"N"}})

	wsURL := result["server"].(map[string]any)["websocket"].(string)
	dial := func(query string) net.Conn {
		t.Helper()
		conn, _, _, err := ws.Dial(bg, wsURL+"?"+query)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	byChannels := dial("CHANNEL_ID=" + url.QueryEscape(strings.Join(signed, "/")) + "&revision=19")
	byToken := dial("token=" + url.QueryEscape(secrets["connection token"]) + "&jsonRpc=true&revision=19")
	post(base+"/rest/pull.application.event.add", url.Values{"auth": {access}, "COMMAND": {"hello"}})
	for _, conn := range []net.Conn{byChannels, byToken} {
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			data, err := wsutil.ReadServerText(conn)
			if err != nil {
				t.Fatalf("waiting for the event: %v", err)
			}
			if strings.Contains(string(data), `"hello"`) {
				break
			}
		}
	}
	// A version 5 private id is "private:public.signature".
	priv, _, _ := strings.Cut(signed[0], ".")
	priv, _, _ = strings.Cut(priv, ":")
	resp, err := http.Post(r.Internal+"/pub/?CHANNEL_ID="+priv, "application/json", strings.NewReader(`{"module_id":"m","command":"c","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// Refused subscriptions: a forged signature over a long poll, a forged
	// token over a WebSocket.
	forgedSig := priv + "." + strings.Repeat("ab", 20)
	secrets["forged signature"] = strings.Repeat("ab", 20)
	resp, err = http.Get(base + "/sub/?CHANNEL_ID=" + forgedSig)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pollID := resp.Header.Get(requestIDHeader)
	if resp.StatusCode != http.StatusBadRequest || pollID == "" {
		t.Fatalf("forged long poll: %d, request id %q", resp.StatusCode, pollID)
	}
	jwt := secrets["connection token"]
	forgedToken := jwt[:strings.LastIndexByte(jwt, '.')+1] + "Zm9yZ2VkLXNpZ25hdHVyZS1vZi10aGUtdG9rZW4"
	secrets["forged token signature"] = "Zm9yZ2VkLXNpZ25hdHVyZS1vZi10aGUtdG9rZW4"
	refused := dial("token=" + url.QueryEscape(forgedToken) + "&jsonRpc=true")
	_ = refused.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		// The refusal comes as close code 4010 after the upgrade.
		if _, err := wsutil.ReadServerText(refused); err != nil {
			break
		}
	}

	line := logs.waitFor(t, 0, `msg="subscription refused"`, "transport=longpoll", "reason=\"bad channel id or signature\"", "request_id="+pollID)
	t.Logf("refused long poll: %s", line)
	line = logs.waitFor(t, 0, `msg="subscription refused"`, "transport=websocket", "protocol=jsonrpc", "reason=\"bad token signature\"")
	t.Logf("refused websocket: %s", line)
	line = logs.waitFor(t, 0, `msg="rest call"`, "method=pull.application.config.get", "status=200", "auth=webhook", "user=3")
	t.Logf("webhook call: %s", line)
	logs.waitFor(t, 0, `msg="rest call"`, "method=pull.application.config.get", "auth=oauth", "request_id="+configID)
	logs.waitFor(t, 0, `msg="rest call"`, "method=pull.application.event.add", "status=200")
	logs.waitFor(t, 0, `msg="oauth token request"`, "grant_type=authorization_code", "status=200")
	logs.waitFor(t, 0, `msg="oauth token request"`, "grant_type=refresh_token", "status=200")

	r.Stop(t) // the drain's lines too
	text := logs.String()
	for what, secret := range secrets {
		if len(secret) < leakWindow {
			t.Fatalf("%s %q is too short to look for: the test lost it", what, secret)
		}
		// Any part of a secret is a leak: a truncated one too.
		for i := 0; i+leakWindow <= len(secret); i++ {
			if part := secret[i : i+leakWindow]; strings.Contains(text, part) {
				t.Errorf("the log holds %q of the %s %q", part, what, secret)
				break
			}
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", text)
	}
}

// leakWindow is the length of the pieces of a secret looked for in a log.
const leakWindow = 12

// TestRequestIDFromProxyIsKept: an id a proxy sent is answered and logged
// as it is; one that could forge log text is replaced.
func TestRequestIDFromProxyIsKept(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.LogLevel = "debug"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogCapture()
	r := startOn(t, ln, cfg, logs.logger(), nil)
	for _, tt := range []struct{ sent, want string }{
		{"9f86d081884c7d659a2feaa0c55ad015", "9f86d081884c7d659a2feaa0c55ad015"},
		{"bad id\" level=ERROR", ""},
		{strings.Repeat("a", maxRequestID+1), ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, r.URL+"/rest/server.time", nil)
		req.Header.Set(requestIDHeader, tt.sent)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get(requestIDHeader)
		if tt.want != "" && got != tt.want || tt.want == "" && (got == "" || got == tt.sent) {
			t.Errorf("sent %q, answered %q", tt.sent, got)
		}
		logs.waitFor(t, 0, `msg="rest call"`, "method=server.time", "request_id="+got)
	}
	if strings.Contains(logs.String(), "bad id") {
		t.Errorf("a refused request id reached the log:\n%s", logs.String())
	}
}
