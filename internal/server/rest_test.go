package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/auth"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/testkit"
	"github.com/pushpull/pushpull/internal/wire"
)

func call(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	status, _, body := testkit.JSON(t)(http.PostForm(u, form))
	return status, body
}

// TestRESTConfigToDelivery runs the application flow over real HTTP: a
// token, pull.application.config.get, a WebSocket on the returned
// channels, and pull.application.event.add arriving on it.
func TestRESTConfigToDelivery(t *testing.T) {
	cfg := testkit.Config(t)
	cfg.SignatureKey = "SECRET"
	cfg.ServerVersion = 3
	ln := testkit.Listen(t)
	cfg.PublicURL = "http://" + ln.Addr().String()
	s, err := New(cfg, testkit.Logger())
	if err != nil {
		t.Fatal(err)
	}
	testkit.ServeOn(t, s, ln, true)

	bg := context.Background()
	app, tok := appUserToken(t, s.store, false)
	base := cfg.PublicURL

	if status, body := call(t, base+"/rest/pull.application.config.get.json", url.Values{"CACHE": {"N"}}); status != 401 || body["error"] != "NO_AUTH_FOUND" {
		t.Fatalf("without auth: %d %v", status, body)
	}
	// b24jssdk's OAuth client sends a double slash.
	status, body := call(t, base+"/rest//pull.application.config.get", url.Values{"auth": {tok.AccessToken}, "CACHE": {"N"}})
	if status != 200 || body["time"] == nil {
		t.Fatalf("config.get: %d %v", status, body)
	}
	result := body["result"].(map[string]any)
	chans := result["channels"].(map[string]any)
	ids := chans["private"].(map[string]any)["id"].(string) + "/" + chans["shared"].(map[string]any)["id"].(string)
	wsURL := result["server"].(map[string]any)["websocket"].(string)

	conn, _, _, err := ws.Dial(bg, wsURL+"?CHANNEL_ID="+url.QueryEscape(ids)+"&revision=19")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Publish until the subscription is attached: the first event.add may
	// race the WebSocket handshake; the reader sees whatever arrives.
	status, body = call(t, base+"/rest/pull.application.event.add", url.Values{"auth": {tok.AccessToken}, "COMMAND": {"greet"}, "PARAMS[name]": {"Ann"}})
	if status != 200 || body["result"] != true {
		t.Fatalf("event.add: %d %v", status, body)
	}
	data, err := wsutil.ReadServerText(conn)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := wire.ParseTextFrames(data)
	if err != nil || len(frames) != 1 {
		t.Fatalf("frames %v %v", frames, err)
	}
	var ev map[string]any
	if err := json.Unmarshal(frames[0].Text, &ev); err != nil {
		t.Fatal(err)
	}
	params, _ := ev["params"].(map[string]any) // nil when missing: fails below, not a panic
	if ev["module_id"] != "application" || ev["command"] != "greet" || params["name"] != "Ann" ||
		!strings.Contains(string(frames[0].Text), `"revision_web":19`) {
		t.Fatalf("event %s", frames[0].Text)
	}
	// The token endpoint is served too.
	if status, body := call(t, base+"/oauth/token/", url.Values{"grant_type": {"refresh_token"}, "client_id": {app.ClientID},
		"client_secret": {app.ClientSecret}, "refresh_token": {tok.RefreshToken}}); status != 200 || body["access_token"] == "" {
		t.Fatalf("refresh: %d %v", status, body)
	}
}

// appUserToken registers an application with the pull scope and user 3 (an
// administrator when admin is set) on st's default portal, and issues that
// user a token for the application, as an OAuth grant would.
func appUserToken(t *testing.T, st store.Store, admin bool) (store.App, auth.TokenResponse) {
	t.Helper()
	bg := context.Background()
	p, err := st.DefaultPortal(bg)
	if err != nil {
		t.Fatal(err)
	}
	app, err := st.CreateApp(bg, p.ID, "demo", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutUser(bg, store.User{PortalID: p.ID, ID: 3, Active: true, Admin: admin}); err != nil {
		t.Fatal(err)
	}
	tok, err := auth.New(st, auth.Options{}).Issue(bg, app, 3)
	if err != nil {
		t.Fatal(err)
	}
	return app, tok
}
