package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/pushpull/pushpull/internal/auth"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/store/sqlite"
)

// restFixture is an app, a user and a token in a running server's registry,
// made through the registry itself (the server keeps it open: SQLite WAL).
type restFixture struct {
	srv     *server
	app     store.App
	token   string
	webhook string // the same user and app through a webhook
	refresh string
	// memberID is the portal's.
	memberID string
	// adminToken acts for user 2, a portal administrator.
	adminToken string
}

func newRESTFixture(t *testing.T, version string, args ...string) *restFixture {
	t.Helper()
	dir := t.TempDir()
	srv := startServer(t, append([]string{"--data-dir", dir, "--server-version", version, "--public-url", ""}, args...)...)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "registry.db"), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, app, tok, adminTok := seedRegistry(t, st)
	wh, err := st.CreateWebhook(ctx, p.ID, 1, app.ID, []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	return &restFixture{srv: srv, app: app, token: tok.AccessToken, refresh: tok.RefreshToken, memberID: tok.MemberID, adminToken: adminTok.AccessToken,
		webhook: fmt.Sprintf("%s/rest/1/%s/", srv.base, wh.Secret)}
}

// seedRegistry registers in st an application "interop" with user 1 and
// user 2, an administrator, and returns the portal, the application and
// the users' tokens.
func seedRegistry(t *testing.T, st store.Store) (store.Portal, store.App, auth.TokenResponse, auth.TokenResponse) {
	t.Helper()
	ctx := t.Context()
	p, err := st.DefaultPortal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	app, err := st.CreateApp(ctx, p.ID, "interop", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	var toks []auth.TokenResponse
	for _, u := range []store.User{{PortalID: p.ID, ID: 1, Active: true}, {PortalID: p.ID, ID: 2, Active: true, Admin: true}} {
		if err := st.PutUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		tok, err := auth.New(st, auth.Options{}).Issue(ctx, app, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	return p, app, toks[0], toks[1]
}

func (f *restFixture) eventAdd(t *testing.T, form url.Values) {
	t.Helper()
	form.Set("auth", f.token)
	resp, err := http.PostForm(f.srv.base+"/rest/pull.application.event.add", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || body["result"] != true {
		t.Fatalf("event.add: %d %v %v", resp.StatusCode, body, err)
	}
}

// The PullClient fetches its config from pushpull's own REST with
// pull.application.config.get, connects, and receives what
// pull.application.event.add sends, in version 3 (text) and 4 (protobuf).
func testRESTFlow(t *testing.T, version, transport string) {
	ctx := testContext(t)
	f := newRESTFixture(t, version)
	c := startPullClient(t, ctx, ClientInput{UserID: 1, Transport: transport, REST: &RESTAuth{URL: f.srv.base, Auth: f.token}})
	c.mustWaitFor(ctx, "config request", func(e Event) bool { return e.Event == "rest" })
	c.waitOnline(ctx)

	f.eventAdd(t, url.Values{"COMMAND": {"toShared"}, "PARAMS[n]": {"1"}})
	checkMessage(t, c.nextMessage(ctx), "application", "toShared", `{"n":"1"}`)
	f.eventAdd(t, url.Values{"COMMAND": {"toMe"}, "USER_ID": {"1"}, "MODULE_ID": {"my.app"}, "PARAMS": {`{"ok":true}`}})
	checkMessage(t, c.nextMessage(ctx), "my.app", "toMe", `{"ok":true}`)
	// An administrator reaches user 1's private application channel.
	if code, body := postJSON(t, f.srv.base+"/rest/pull.application.event.add", url.Values{"auth": {f.adminToken}, "COMMAND": {"fromAdmin"}, "USER_ID[]": {"1"}}); code != 200 {
		t.Fatalf("admin event.add: %d %v", code, body)
	}
	checkMessage(t, c.nextMessage(ctx), "application", "fromAdmin", `{}`)
	// User 1 may not target user 2.
	if code, body := postJSON(t, f.srv.base+"/rest/pull.application.event.add", url.Values{"auth": {f.token}, "COMMAND": {"x"}, "USER_ID": {"2"}}); code != 400 || body["error"] != "USER_ID_ACCESS_ERROR" {
		t.Fatalf("non-admin to another user: %d %v", code, body)
	}
	// Nothing else arrived: the next message is the next one sent.
	f.eventAdd(t, url.Values{"COMMAND": {"last"}})
	checkMessage(t, c.nextMessage(ctx), "application", "last", `{}`)
}

func TestPullClientRESTv3WebSocket(t *testing.T) { testRESTFlow(t, "3", "websocket") }
func TestPullClientRESTv4WebSocket(t *testing.T) { testRESTFlow(t, "4", "websocket") }
func TestPullClientRESTv4LongPoll(t *testing.T)  { testRESTFlow(t, "4", "longpolling") }

// A webhook bound to the application reaches the same channels: the client
// configured through it receives events sent through it, once each.
func TestPullClientRESTWebhook(t *testing.T) {
	ctx := testContext(t)
	f := newRESTFixture(t, "4")
	c := startPullClient(t, ctx, ClientInput{UserID: 1, Transport: "websocket", REST: &RESTAuth{URL: f.srv.base, Webhook: f.webhook}})
	c.waitOnline(ctx)
	resp, err := http.PostForm(f.webhook+"pull.application.event.add.json", url.Values{"COMMAND": {"viaHook"}, "USER_ID": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("event.add through the webhook: %d", resp.StatusCode)
	}
	checkMessage(t, c.nextMessage(ctx), "application", "viaHook", `{}`)
	// A token event after it proves nothing else arrived in between.
	f.eventAdd(t, url.Values{"COMMAND": {"sentinel"}})
	checkMessage(t, c.nextMessage(ctx), "application", "sentinel", `{}`)
}

// b24jssdk's own B24OAuth, given an expired access token, refreshes it at
// pushpull's /oauth/token/ before fetching the config, and the PullClient
// built on it works.
func TestPullClientB24OAuthRefresh(t *testing.T) {
	ctx := testContext(t)
	f := newRESTFixture(t, "4")
	c := startPullClient(t, ctx, ClientInput{UserID: 1, Transport: "websocket", OAuth: &OAuthInput{
		Options: map[string]any{
			"accessToken": f.token, "refreshToken": f.refresh, "expires": 0, "expiresIn": 3600,
			"clientEndpoint": f.srv.base + "/rest/", "serverEndpoint": f.srv.base + "/rest/",
			"domain": f.srv.base, "memberId": f.memberID, "scope": "pull", "status": "L",
		},
		Secret: map[string]string{"clientId": f.app.ClientID, "clientSecret": f.app.ClientSecret},
	}})
	c.mustWaitFor(ctx, "token refresh", func(e Event) bool { return e.Event == "refresh" })
	c.waitOnline(ctx)
	// The old refresh token was rotated away.
	resp, err := http.PostForm(f.srv.base+"/oauth/token/", url.Values{"grant_type": {"refresh_token"}, "client_id": {f.app.ClientID},
		"client_secret": {f.app.ClientSecret}, "refresh_token": {f.refresh}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("reusing the rotated refresh token: %d", resp.StatusCode)
	}
	// So was the access token issued with it; send through the webhook.
	if code, _ := postJSON(t, f.srv.base+"/rest/pull.application.event.add", url.Values{"auth": {f.token}, "COMMAND": {"x"}}); code != http.StatusUnauthorized {
		t.Fatalf("the access token of a rotated pair still works: %d", code)
	}
	if code, body := postJSON(t, f.webhook+"pull.application.event.add", url.Values{"COMMAND": {"afterRefresh"}}); code != 200 {
		t.Fatalf("event.add: %d %v", code, body)
	}
	checkMessage(t, c.nextMessage(ctx), "application", "afterRefresh", `{}`)
	if code, body := postJSON(t, f.webhook+"pull.application.event.add", url.Values{"COMMAND": {"sentinel"}}); code != 200 {
		t.Fatalf("event.add: %d %v", code, body)
	}
	checkMessage(t, c.nextMessage(ctx), "application", "sentinel", `{}`)
}

func postJSON(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}
