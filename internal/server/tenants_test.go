package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/redistest"
	"github.com/pushpull/pushpull/internal/testkit"
	"github.com/pushpull/pushpull/internal/wire"
)

// TestSharedConfigGetServesTheHomePortal: in shared mode config.get says
// so and hands out the server's own portal's clientId; a client that sends
// it (as the official clients do) subscribes on the channels the config
// signed, and one that does not is refused with 4036.
func TestSharedConfigGetServesTheHomePortal(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECRET"
	cfg.Mode = config.ModeShared
	cfg.InternalAddr = config.SameAddr
	var srv *Server
	r := startWith(t, cfg, func(s *Server) { srv = s })
	bg := context.Background()
	_, tok := appUserToken(t, srv.store, false)
	p, err := srv.store.DefaultPortal(bg)
	if err != nil {
		t.Fatal(err)
	}
	status, body := call(t, r.URL+"/rest/pull.application.config.get", url.Values{"auth": {tok.AccessToken}})
	if status != 200 {
		t.Fatalf("config.get: %d %v", status, body)
	}
	result := body["result"].(map[string]any)
	server := result["server"].(map[string]any)
	if server["mode"] != "shared" || result["clientId"] != p.MemberID {
		t.Fatalf("config.get: mode %v, clientId %v; want shared, %s", server["mode"], result["clientId"], p.MemberID)
	}
	chans := result["channels"].(map[string]any)
	ids := chans["private"].(map[string]any)["id"].(string) + "/" + chans["shared"].(map[string]any)["id"].(string)
	wsURL := strings.Replace(r.URL, "http", "ws", 1) + "/sub/?CHANNEL_ID=" + url.QueryEscape(ids) + "&revision=19"

	// Bitrix's shared-mode config sends client publishes to /rest/
	// itself: the push server answers them, the REST API the rest. The
	// official clients send no clientId there: the request is the home
	// portal's, as Push server 2.x checks it with its own key.
	resp, err := http.Post(r.URL+"/rest/?CHANNEL_ID="+url.QueryEscape(ids), "application/octet-stream", strings.NewReader("not protobuf"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || string(b) != "4013: Wrong Request Data." {
		t.Fatalf("client publish on /rest/: %d %s, want a push server error", resp.StatusCode, b)
	}
	if status, body := call(t, r.URL+"/rest/server.time", url.Values{"auth": {tok.AccessToken}}); status != 200 || body["result"] == nil {
		t.Fatalf("server.time next to it: %d %v", status, body)
	}

	var status400 ws.StatusError
	if _, _, _, err := ws.Dial(bg, wsURL); !errors.As(err, &status400) || int(status400) != http.StatusBadRequest {
		t.Fatalf("subscribing without clientId: %v, want 400", err)
	}
	conn, _, _, err := ws.Dial(bg, wsURL+"&clientId="+p.MemberID)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if status, body := call(t, r.URL+"/rest/pull.application.event.add", url.Values{"auth": {tok.AccessToken}, "COMMAND": {"greet"}}); status != 200 || body["result"] != true {
		t.Fatalf("event.add: %d %v", status, body)
	}
	data, err := wsutil.ReadServerText(conn)
	if err != nil {
		t.Fatal(err)
	}
	if frames, err := wire.ParseTextFrames(data); err != nil || len(frames) != 1 || !strings.Contains(string(frames[0].Text), `"command":"greet"`) {
		t.Fatalf("frames %q %v", data, err)
	}
}

// TestSharedClusterNodes: a portal registered through node 1 is served by
// node 2 at once (its subscriber there gets what its backend publishes on
// node 1), and unregistering it on node 1 cuts its connection on node 2.
func TestSharedClusterNodes(t *testing.T) {
	redis := redistest.Start(t)
	node := func() *testkit.Server {
		cfg := config.Default()
		cfg.DataDir = t.TempDir()
		cfg.SignatureKey = "SECRET-of-the-cluster"
		cfg.Redis = redis.URL()
		cfg.Mode = config.ModeShared
		cfg.TenantVerify = "open"
		cfg.TenantReload = 20 * time.Millisecond
		return start(t, cfg)
	}
	one, two := node(), node()
	const clientID = "0123456789abcdef0123456789abcdef"

	q := url.Values{"BX_LICENCE": {clientID}, "BX_TYPE": {"CP"}}.Encode()
	resp, err := http.PostForm(one.URL+"/register-client/", url.Values{"verificationQuery": {q}})
	if err != nil {
		t.Fatal(err)
	}
	var reg struct{ Status, SecurityKey, Error string }
	err = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	if err != nil || reg.Status != "success" || reg.SecurityKey == "" {
		t.Fatalf("register on node 1: %+v %v", reg, err)
	}
	signer := channel.NewSigner([]byte(reg.SecurityKey), channel.SHA1)

	ch := mustParse(t, "00112233445566778899aabbccddeeff")
	conn, _, _, err := ws.Dial(context.Background(), strings.Replace(two.URL, "http", "ws", 1)+
		"/sub/?CHANNEL_ID="+url.QueryEscape(signer.SignChannel(ch))+"&clientId="+clientID)
	if err != nil {
		t.Fatalf("subscribing on node 2: %v", err)
	}
	defer conn.Close()

	// Published on node 1 until node 2's subscription is in place: the
	// first may go out before node 2 subscribed to the channel in Redis.
	got := make(chan string, 1)
	go func() {
		data, err := wsutil.ReadServerText(conn)
		if err == nil {
			got <- string(data)
		}
		close(got)
	}()
	body := `{"module_id":"t","command":"hello"}`
	var frame string
	for deadline := time.Now().Add(30 * time.Second); frame == "" && time.Now().Before(deadline); {
		u := one.Internal + "/pub/?CHANNEL_ID=" + ch.String() + "&clientId=" + clientID +
			"&signature=" + hex.EncodeToString(signer.Sign([]byte(body)))
		resp, err := http.Post(u, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("publish on node 1: %d %s", resp.StatusCode, b)
		}
		select {
		case frame = <-got:
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !strings.Contains(frame, `"command":"hello"`) {
		t.Fatalf("node 2's subscriber got %q", frame)
	}

	cmd := `{"method":"unregister","params":{"clientId":"` + clientID + `","host":"127.0.0.1"}}`
	key := channel.NewSigner([]byte("SECRET-of-the-cluster"), channel.SHA1)
	resp, err = http.Post(one.Internal+"/systemctl/?signature="+hex.EncodeToString(key.Sign([]byte(cmd))), "application/json", strings.NewReader(cmd))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"result":{"status":"success"},"error":null}` {
		t.Fatalf("unregister on node 1: %s", b)
	}
	expectClose(t, conn, 4036, "node 2's connection")
}

// expectClose reads what conn sends, at most a minute, until the server
// closes it, and fails unless it closes with code.
func expectClose(t *testing.T, conn net.Conn, code ws.StatusCode, what string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		_, err := wsutil.ReadServerText(conn)
		var closed wsutil.ClosedError
		if errors.As(err, &closed) {
			if closed.Code != code {
				t.Fatalf("%s closed with %d %q, want %d", what, closed.Code, closed.Reason, code)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s: %v, want a %d close", what, err, code)
		}
	}
}
