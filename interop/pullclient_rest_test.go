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
)

// restFixture is an app, a user and a token in a running server's registry,
// made through the registry itself (the server keeps it open: SQLite WAL).
type restFixture struct {
	srv     *server
	app     store.App
	token   string
	webhook string // the same user and app through a webhook
}

func newRESTFixture(t *testing.T, version string) *restFixture {
	t.Helper()
	dir := t.TempDir()
	srv := startServer(t, "--data-dir", dir, "--server-version", version, "--public-url", "")
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "registry.db"), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := st.DefaultPortal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	app, err := st.CreateApp(ctx, p.ID, "interop", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutUser(ctx, store.User{PortalID: p.ID, ID: 1, Active: true}); err != nil {
		t.Fatal(err)
	}
	tok, err := auth.New(st, auth.Options{}).Issue(ctx, app, 1)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := st.CreateWebhook(ctx, p.ID, 1, app.ID, []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	return &restFixture{srv: srv, app: app, token: tok.AccessToken, webhook: fmt.Sprintf("%s/rest/1/%s/", srv.base, wh.Secret)}
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
