package interop

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/tlstest"
)

// TestPullClientOverTLS runs the official client against a server that
// serves HTTPS and WSS itself (--tls-cert), trusting a CA the test made
// (NODE_EXTRA_CA_CERTS): b24jssdk's B24OAuth refreshes its token at
// https://…/oauth/token/, the PullClient fetches its config over https,
// takes the wss:// URL (websocket_secure) and receives events. Then the
// server's debug log, the whole run's, must hold none of the credentials,
// tokens or channel signatures the run used.
func TestPullClientOverTLS(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	leaf := ca.Issue(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 90*24*time.Hour)
	f := newRESTFixture(t, "4", "--tls-cert", leaf.CertFile, "--tls-key", leaf.KeyFile)
	base := strings.Replace(f.srv.base, "http://", "https://", 1)
	webhook := strings.Replace(f.webhook, "http://", "https://", 1)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}}
	post := func(u string, form url.Values) map[string]any {
		t.Helper()
		resp, err := client.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %v %v", u, resp.StatusCode, body, err)
		}
		return body
	}

	c := startPullClient(t, ctx, ClientInput{UserID: 1, Transport: "websocket", CAFile: ca.WriteCA(t, dir), OAuth: &OAuthInput{
		Options: map[string]any{
			"accessToken": f.token, "refreshToken": f.refresh, "expires": 0, "expiresIn": 3600,
			"clientEndpoint": base + "/rest/", "serverEndpoint": base + "/rest/",
			"domain": base, "memberId": f.memberID, "scope": "pull", "status": "L",
		},
		Secret: map[string]string{"clientId": f.app.ClientID, "clientSecret": f.app.ClientSecret},
	}})
	c.mustWaitFor(ctx, "token refresh", func(e Event) bool { return e.Event == "refresh" })
	c.waitOnline(ctx)

	// What the client was told: secure URLs on the TLS listener.
	cfg := post(webhook+"pull.application.config.get.json", url.Values{"CACHE": {"N"}})["result"].(map[string]any)
	srvCfg := cfg["server"].(map[string]any)
	host := strings.TrimPrefix(base, "https://")
	if srvCfg["websocket_secure"] != "wss://"+host+"/sub/" || srvCfg["websocket"] != "wss://"+host+"/sub/" {
		t.Fatalf("config.get server block: %v", srvCfg)
	}
	post(webhook+"pull.application.event.add.json", url.Values{"COMMAND": {"overWSS"}, "USER_ID": {"1"}})
	checkMessage(t, c.nextMessage(ctx), "application", "overWSS", `{}`)
	post(webhook+"pull.application.event.add.json", url.Values{"COMMAND": {"sentinel"}})
	checkMessage(t, c.nextMessage(ctx), "application", "sentinel", `{}`)
	c.Stop()

	secrets := map[string]string{"access token": f.token, "refresh token": f.refresh, "admin token": f.adminToken,
		"client secret": f.app.ClientSecret, "webhook secret": strings.Split(strings.TrimSuffix(f.webhook, "/"), "/")[5]}
	for _, typ := range []string{"private", "shared"} {
		id := cfg["channels"].(map[string]any)[typ].(map[string]any)["id"].(string)
		_, sig, ok := strings.Cut(id, ".")
		if !ok {
			t.Fatalf("%s channel id %q is not signed", typ, id)
		}
		secrets[typ+" channel signature"] = sig
	}
	logs := f.srv.logs.String()
	if !strings.Contains(logs, `msg="rest call"`) || !strings.Contains(logs, `msg="oauth token request"`) {
		t.Fatalf("the debug log lacks the REST and OAuth lines:\n%s", logs)
	}
	const window = 12 // any part of a secret is a leak
	for what, secret := range secrets {
		if len(secret) < window {
			t.Fatalf("%s %q: too short to look for", what, secret)
		}
		for i := 0; i+window <= len(secret); i++ {
			if strings.Contains(logs, secret[i:i+window]) {
				t.Errorf("the server log holds part of the %s", what)
				break
			}
		}
	}
}
