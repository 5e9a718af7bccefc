package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/store"
)

// consoleOverview reads the overview and its extra figures.
func consoleOverview(t *testing.T, base string) (map[string]any, map[string]any) {
	t.Helper()
	code, ov := consoleDo(t, nil, "GET", base+"/console/api/overview", nil, nil)
	if code != 200 {
		t.Fatalf("overview: %d %v", code, ov)
	}
	x, _ := ov["extra"].(map[string]any)
	if x == nil {
		t.Fatalf("overview without extra figures: %v", ov)
	}
	return ov, x
}

// TestConsoleOverviewFollowsTheCounters: the overview's figures that the
// metrics counters keep move as a real flow goes through the server (a
// recovering WebSocket, a live delivery, REST calls, one refused), agree
// with /metrics, and the deliveries chart shows the delivery.
func TestConsoleOverviewFollowsTheCounters(t *testing.T) {
	cfg := consoleConfig(t, "")
	var srv *Server
	r := startWith(t, cfg, func(s *Server) { srv = s })
	_, before := consoleOverview(t, r.Internal)
	for _, k := range []string{"deliveries", "slowConsumersCut", "recoveries", "restCalls", "restErrors", "pushQueue"} {
		if before[k] != 0.0 {
			t.Errorf("%s = %v at start, want 0", k, before[k])
		}
	}

	signer := channel.NewSigner([]byte(cfg.SignatureKey), channel.SHA1)
	priv, pub := mustParse(t, "fb9f7e13dc3d595c5aefe1a0216c27a2"), mustParse(t, "0e6bb6d5b3f04e0a9c2f6cb1b5e1a7f3")
	publish := func(body string) {
		t.Helper()
		resp, err := http.Post(r.Internal+"/pub/?CHANNEL_ID="+priv.String(), "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("publish: %d", resp.StatusCode)
		}
	}
	read := func(c *wsClient, want string) {
		t.Helper()
		_ = c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		data, err := wsutil.ReadServerText(c)
		if err != nil || !strings.Contains(string(data), want) {
			t.Fatalf("reading %q: %q %v", want, data, err)
		}
	}
	publish("first") // stored, then replayed to the recovering socket
	sock := dialWS(t, strings.Replace(r.URL, "http://", "ws://", 1)+"/sub/?CHANNEL_ID="+
		url.QueryEscape(signer.SignPrivate(priv, pub))+"&mid=00000000000000000000000000")
	read(sock, "first")
	publish("second") // live: one delivery
	read(sock, "second")

	_, tok := appUserToken(t, srv.store, false)
	if status, _ := call(t, r.URL+"/rest/pull.application.config.get", url.Values{"auth": {tok.AccessToken}}); status != 200 {
		t.Fatalf("config.get: %d", status)
	}
	if status, _ := call(t, r.URL+"/rest/pull.application.config.get", url.Values{}); status != 401 {
		t.Fatalf("config.get without auth: %d", status)
	}

	_, after := consoleOverview(t, r.Internal)
	m := scrapeMetrics(t, r.Internal)
	for _, w := range []struct {
		key    string
		want   float64
		metric float64
	}{
		{"deliveries", 1, m.value("pushpull_deliveries_total")},
		{"recoveries", 1, m.value("pushpull_recoveries_total")},
		{"slowConsumersCut", 0, m.value("pushpull_connection_drops_total", "reason", "slow_consumer")},
		{"restCalls", 2, m.value("pushpull_rest_calls_total", "outcome", "ok") + m.value("pushpull_rest_calls_total", "outcome", "NO_AUTH_FOUND")},
		{"restErrors", 1, m.value("pushpull_rest_calls_total", "outcome", "NO_AUTH_FOUND")},
		{"pushQueue", 0, m.value("pushpull_push_queue_depth")},
	} {
		if got := after[w.key]; got != w.want || got != w.metric {
			t.Errorf("%s: %v, want %v (/metrics says %v)", w.key, got, w.want, w.metric)
		}
	}
	protos, _ := after["connectionsByProtocol"].(map[string]any)
	if len(protos) != 1 || protos["websocket/text"] != 1.0 {
		t.Errorf("connections by protocol: %v, want the one text WebSocket", after["connectionsByProtocol"])
	}

	// The sampler reads the deliveries every second; the chart shows the
	// second's delivery once a sample after it is taken.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ov, _ := consoleOverview(t, r.Internal)
		series, _ := ov["series"].(map[string]any)
		var total float64
		rates, _ := series["deliveries"].([]any)
		for _, v := range rates {
			total += v.(float64)
		}
		if total > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deliveries chart never showed the delivery: %v", series)
		}
	}
}

// sharedConsole starts a shared-mode server with the console token given
// (none: read-only) and registers one portal through /register-client/.
func sharedConsole(t *testing.T, token, clientID string) (base string, internal string, securityKey string) {
	t.Helper()
	cfg := consoleConfig(t, token)
	cfg.Mode = config.ModeShared
	cfg.TenantVerify = "open"
	r := start(t, cfg)
	q := url.Values{"BX_LICENCE": {clientID}, "BX_TYPE": {"CP"}}.Encode()
	resp, err := http.PostForm(r.URL+"/register-client/", url.Values{"verificationQuery": {q}})
	if err != nil {
		t.Fatal(err)
	}
	var reg struct{ Status, SecurityKey string }
	err = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	if err != nil || reg.Status != "success" || reg.SecurityKey == "" {
		t.Fatalf("register: %+v %v", reg, err)
	}
	return r.URL, r.Internal, reg.SecurityKey
}

// consoleTenants reads the registry page's tenant list.
func consoleTenants(t *testing.T, internal string) (mode string, tenants []map[string]any, raw string) {
	t.Helper()
	code, reg := consoleDo(t, nil, "GET", internal+"/console/api/registry", nil, nil)
	if code != 200 {
		t.Fatalf("registry: %d %v", code, reg)
	}
	b, _ := json.Marshal(reg)
	list, _ := reg["tenants"].([]any)
	for _, v := range list {
		tenants = append(tenants, v.(map[string]any))
	}
	mode, _ = reg["mode"].(string)
	return mode, tenants, string(b)
}

// TestConsoleRemovesTenants: in shared mode the registry page lists the
// tenants without their keys; removing one takes the operator credential
// and a same-site request, refuses bad input and unknown tenants, and
// cuts the tenant's connection as `pushpull tenant remove` does.
func TestConsoleRemovesTenants(t *testing.T) {
	const clientID = "0123456789abcdef0123456789abcdef"
	base, internal, key := sharedConsole(t, consoleToken, clientID)
	mode, tenants, raw := consoleTenants(t, internal)
	if mode != "shared" || len(tenants) != 1 || tenants[0]["clientId"] != clientID || tenants[0]["host"] == "" ||
		tenants[0]["created"] == 0.0 || tenants[0]["origin"] != store.TenantRegistered {
		t.Fatalf("registry in shared mode: %s", raw)
	}
	if strings.Contains(raw, key) {
		t.Fatal("the registry view shows the tenant's key")
	}
	host := tenants[0]["host"].(string)

	ch := mustParse(t, "00112233445566778899aabbccddeeff")
	conn, _, _, err := ws.Dial(context.Background(), strings.Replace(base, "http", "ws", 1)+"/sub/?CHANNEL_ID="+
		url.QueryEscape(channel.NewSigner([]byte(key), channel.SHA1).SignChannel(ch))+"&clientId="+clientID)
	if err != nil {
		t.Fatalf("the tenant's subscriber: %v", err)
	}
	defer conn.Close()

	api := internal + "/console/api/tenants/remove"
	for _, tc := range []struct {
		name   string
		body   any
		header http.Header
		code   int
		want   string
	}{
		{"no credential", map[string]string{"clientId": clientID, "host": host}, nil, 403, "OPERATOR_REQUIRED"},
		{"from another site", map[string]string{"clientId": clientID, "host": host},
			http.Header{"Authorization": {"Bearer " + consoleToken}, "Sec-Fetch-Site": {"cross-site"}}, 403, "CROSS_SITE"},
		{"bad client id", map[string]string{"clientId": "nothex", "host": host}, bearer(), 400, "INVALID_REQUEST"},
		{"bad host", map[string]string{"clientId": clientID, "host": "a b"}, bearer(), 400, "INVALID_REQUEST"},
		{"unknown tenant", map[string]string{"clientId": strings.Repeat("f", 32), "host": host}, bearer(), 404, "NOT_FOUND"},
		{"not JSON", "clientId=" + clientID, bearer(), 400, "INVALID_REQUEST"},
	} {
		code, out := consoleDo(t, nil, "POST", api, tc.body, tc.header)
		if code != tc.code || out["error"] != tc.want {
			t.Errorf("%s: %d %v, want %d %s", tc.name, code, out, tc.code, tc.want)
		}
	}
	if _, tenants, _ := consoleTenants(t, internal); len(tenants) != 1 {
		t.Fatalf("a refused remove removed: %v", tenants)
	}

	if code, out := consoleDo(t, nil, "POST", api, map[string]string{"clientId": clientID, "host": host}, bearer()); code != 200 || out["removed"] != true {
		t.Fatalf("remove: %d %v", code, out)
	}
	expectClose(t, conn, 4036, "the tenant's connection")
	if _, tenants, _ := consoleTenants(t, internal); len(tenants) != 0 {
		t.Fatalf("after remove: %v", tenants)
	}
	if code, out := consoleDo(t, nil, "POST", api, map[string]string{"clientId": clientID, "host": host}, bearer()); code != 404 {
		t.Fatalf("removing again: %d %v", code, out)
	}
}

// Without --console-token a shared-mode console lists the tenants and
// removes none; in personal mode it says there are none.
func TestConsoleTenantsReadOnlyAndPersonal(t *testing.T) {
	const clientID = "abcdef0123456789abcdef0123456789"
	_, internal, _ := sharedConsole(t, "", clientID)
	_, tenants, raw := consoleTenants(t, internal)
	if len(tenants) != 1 {
		t.Fatalf("read-only registry: %s", raw)
	}
	body := map[string]string{"clientId": clientID, "host": tenants[0]["host"].(string)}
	if code, out := consoleDo(t, nil, "POST", internal+"/console/api/tenants/remove", body, bearer()); code != 403 || out["error"] != "READ_ONLY" {
		t.Fatalf("remove on a read-only console: %d %v", code, out)
	}
	if _, tenants, _ := consoleTenants(t, internal); len(tenants) != 1 {
		t.Fatal("a read-only console removed a tenant")
	}

	r := start(t, consoleConfig(t, consoleToken))
	mode, tenants, raw := consoleTenants(t, r.Internal)
	if mode != "personal" || tenants != nil || !strings.Contains(raw, `"tenants":null`) {
		t.Fatalf("registry in personal mode: %s", raw)
	}
	if code, out := consoleDo(t, nil, "POST", r.Internal+"/console/api/tenants/remove", body, bearer()); code != 409 || out["error"] != "NOT_SHARED" {
		t.Fatalf("remove in personal mode: %d %v", code, out)
	}
}
