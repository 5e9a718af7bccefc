package pullclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/pushpull/pushpull/internal/auth"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/testkit"
	"github.com/pushpull/pushpull/pkg/pullclient"
)

// TestConfigFromREST runs an application's whole flow with the client, for
// each server version: pull.application.config.get over REST, ParseConfig,
// Dial, then pull.application.event.add to the shared channel and to the
// user, both of which arrive.
func TestConfigFromREST(t *testing.T) {
	for _, version := range []int{3, 4, 5} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			cfg := testkit.Config(t)
			cfg.SignatureKey = testKey
			cfg.ServerVersion = version
			ln := testkit.Listen(t)
			cfg.PublicURL = "http://" + ln.Addr().String()
			s, err := server.New(cfg, testkit.Logger())
			if err != nil {
				t.Fatal(err)
			}
			srv := testkit.ServeOn(t, s, ln, true)

			// The application and its user, made as the operator
			// commands make them, on the registry the server uses.
			ctx := context.Background()
			st, closeStore, err := server.OpenRegistry(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer closeStore()
			p, err := st.DefaultPortal(ctx)
			if err != nil {
				t.Fatal(err)
			}
			app, err := st.CreateApp(ctx, p.ID, "demo", []string{"pull"})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.PutUser(ctx, store.User{PortalID: p.ID, ID: 3, Active: true}); err != nil {
				t.Fatal(err)
			}
			tok, err := auth.New(st, auth.Options{}).Issue(ctx, app, 3)
			if err != nil {
				t.Fatal(err)
			}
			rest := func(method string, form url.Values) []byte {
				t.Helper()
				form.Set("auth", tok.AccessToken)
				resp, err := http.PostForm(srv.URL+"/rest/"+method, form)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d %s %v", method, resp.StatusCode, body, err)
				}
				return body
			}

			pcfg, err := pullclient.ParseConfig(rest("pull.application.config.get", url.Values{"CACHE": {"N"}}), false)
			if err != nil {
				t.Fatal(err)
			}
			if pcfg.Version != version || (version == 5) != (pcfg.JWT != "") {
				t.Fatalf("config: version %d, jwt %q", pcfg.Version, pcfg.JWT)
			}
			c, err := pullclient.Dial(t.Context(), pcfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := (<-c.Events()).(pullclient.Connected); got.Transport != pullclient.WebSocket {
				t.Errorf("connected over %v", got.Transport)
			}
			rest("pull.application.event.add", url.Values{"COMMAND": {"everyone"}, "PARAMS[n]": {"1"}})
			rest("pull.application.event.add", url.Values{"COMMAND": {"you"}, "PARAMS[n]": {"2"}, "USER_ID": {"3"}})
			for _, want := range []string{"everyone", "you"} {
				m, ok := next(t, c).(pullclient.Message)
				if !ok {
					t.Fatalf("%s: not a message", want)
				}
				var extra struct {
					RevisionWeb int `json:"revision_web"`
				}
				if m.ModuleID != "application" || m.Command != want || json.Unmarshal(m.Extra, &extra) != nil || extra.RevisionWeb != 19 {
					t.Errorf("message %s: %s", want, m.Body)
				}
			}
		})
	}
}
