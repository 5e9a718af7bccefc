package interop

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Shared mode (docs/shared-mode.md): the official PullClient throws
// unless a shared-mode config carries a clientId, and then sends it with
// every connection.

// The server's own portal: config.get says mode shared and hands out the
// portal's clientId; the client connects with it and receives event.add.
func TestPullClientSharedModeREST(t *testing.T) {
	for _, transport := range []string{"websocket", "longpolling"} {
		t.Run(transport, func(t *testing.T) {
			ctx := testContext(t)
			f := newRESTFixture(t, "4", "--mode", "shared")
			c := startPullClient(t, ctx, ClientInput{UserID: 1, Transport: transport, REST: &RESTAuth{URL: f.srv.base, Auth: f.token}})
			c.waitOnline(ctx)
			f.eventAdd(t, url.Values{"COMMAND": {"toShared"}, "PARAMS[n]": {"1"}})
			checkMessage(t, c.nextMessage(ctx), "application", "toShared", `{"n":"1"}`)
			f.eventAdd(t, url.Values{"COMMAND": {"toMe"}, "USER_ID": {"1"}})
			checkMessage(t, c.nextMessage(ctx), "application", "toMe", `{}`)
		})
	}
}

// A Bitrix portal pointed at a shared server: it registers (as the pull
// module does, with its licence's verification query), signs its channels
// and its /pub/ requests with the key it was handed, and its users'
// PullClient connects with its clientId. What this test sends as the portal
// is computed here, independently of the server's code.
func TestPullClientSharedModePortal(t *testing.T) {
	for _, transport := range []string{"websocket", "longpolling"} {
		t.Run(transport, func(t *testing.T) {
			ctx := testContext(t)
			srv := startServer(t, "--mode", "shared", "--tenant-verify", "open")
			const clientID = "0123456789abcdef0123456789abcdef"
			key := registerPortal(t, srv.base, clientID)

			priv, shared := newID(t), newID(t)
			cfg := makeConfig(srv.base, key, 4, priv, shared)
			cfg["server"].(map[string]any)["mode"] = "shared"
			cfg["clientId"] = clientID
			c := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: 1, Transport: transport})
			c.waitOnline(ctx)

			portalPublish(t, srv, key, clientID, body("im", "toPrivate", `{"n":1}`), priv)
			checkMessage(t, c.nextMessage(ctx), "im", "toPrivate", `{"n":1}`)
			// Another portal publishing to the same ids reaches nobody
			// here: the next message is this portal's own.
			const otherID = "fedcba9876543210fedcba9876543210"
			otherKey := registerPortal(t, srv.base, otherID)
			portalPublish(t, srv, otherKey, otherID, body("im", "foreign", `{}`), priv, shared)
			portalPublish(t, srv, key, clientID, body("im", "toShared", `{"n":2}`), shared)
			checkMessage(t, c.nextMessage(ctx), "im", "toShared", `{"n":2}`)
		})
	}
}

// registerPortal posts the pull module's registration and returns the
// security key.
func registerPortal(t *testing.T, base, clientID string) string {
	t.Helper()
	q := url.Values{"BX_LICENCE": {clientID}, "BX_TYPE": {"CP"}, "BX_HASH": {strings.Repeat("ab", 16)}, "BX_ALL": {"y"}}
	resp, err := http.PostForm(base+"/register-client/", url.Values{"verificationQuery": {q.Encode()}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Status, SecurityKey, Error string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Status != "success" || out.SecurityKey == "" {
		t.Fatalf("register: %+v %v", out, err)
	}
	return out.SecurityKey
}

// portalPublish posts body as the portal's backend: clientId and the
// HMAC-SHA1 of the body in the query.
func portalPublish(t *testing.T, srv *server, key, clientID, body string, ids ...string) {
	t.Helper()
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(body))
	u := srv.internal + "/pub/?CHANNEL_ID=" + strings.Join(ids, "/") + "&clientId=" + clientID + "&signature=" + hex.EncodeToString(m.Sum(nil))
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("portal publish: %d %s", resp.StatusCode, b)
	}
}

// A registered portal's users message each other through their public
// channels: the WebSocket client publishes over its socket, which carries
// the portal's clientId; the long-polling client receives.
func TestPullClientSharedModeClientMessages(t *testing.T) {
	ctx := testContext(t)
	srv := startServer(t, "--mode", "shared", "--tenant-verify", "open")
	const clientID = "0123456789abcdef0123456789abcdef"
	key := registerPortal(t, srv.base, clientID)
	priv1, pub1, priv2, pub2, shared := newID(t), newID(t), newID(t), newID(t), newID(t)
	config := func(user int, priv, pub string, other peer) map[string]any {
		cfg := makeConfigV4(srv.base, user, priv, pub, shared, other)
		// makeConfigV4 signs with the server's key; the portal signs with its own.
		chans := cfg["channels"].(map[string]any)
		chans["private"].(map[string]any)["id"] = sign(key, priv+":"+pub)
		chans["private"].(map[string]any)["public_id"] = pub + "." + signPublic(key, pub)
		chans["shared"].(map[string]any)["id"] = sign(key, shared)
		pc := cfg["publicChannels"].(map[string]any)
		for _, v := range pc {
			e := v.(map[string]any)
			e["signature"] = signPublic(key, e["public_id"].(string))
		}
		cfg["server"].(map[string]any)["mode"] = "shared"
		cfg["clientId"] = clientID
		return cfg
	}
	c1 := startPullClient(t, ctx, ClientInput{Config: config(1, priv1, pub1, peer{2, pub2}), UserID: 1, Transport: "websocket"})
	c2 := startPullClient(t, ctx, ClientInput{Config: config(2, priv2, pub2, peer{1, pub1}), UserID: 2, Transport: "longpolling"})
	c1.waitOnline(ctx)
	c2.waitOnline(ctx)
	c1.command(map[string]any{"cmd": "sendMessage", "users": []int{2}, "moduleId": "application", "command": "byUser", "params": map[string]any{"x": 1}})
	e := c2.nextMessage(ctx)
	checkMessage(t, e, "application", "byUser", `{"x":1}`)
	if e.Extra.Sender == nil || e.Extra.Sender.ID != pub1 {
		t.Fatalf("sender %+v, want the public id %s the portal knows", e.Extra.Sender, pub1)
	}
}

// Version 5 in shared mode: the server's own portal's token, and its
// clientId, through config.get.
func TestPullClientSharedModeRESTv5(t *testing.T) {
	ctx := testContext(t)
	f := newRESTFixture(t, "5", "--mode", "shared")
	c := startPullClient(t, ctx, ClientInput{UserID: 1, Transport: "websocket", REST: &RESTAuth{URL: f.srv.base, Auth: f.token}})
	c.waitOnline(ctx)
	f.eventAdd(t, url.Values{"COMMAND": {"toShared"}, "PARAMS[n]": {"1"}})
	checkMessage(t, c.nextMessage(ctx), "application", "toShared", `{"n":"1"}`)
	f.eventAdd(t, url.Values{"COMMAND": {"toMe"}, "USER_ID": {"1"}})
	checkMessage(t, c.nextMessage(ctx), "application", "toMe", `{}`)
}
