package interop

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/wire/pb"
)

// publishProtobuf posts one RequestBatch shaped as the Bitrix PHP module
// sends it: one Request, private 16-byte receivers, expiry 86400, a type label.
func (s *server) publishProtobuf(t *testing.T, body string, ids ...string) {
	t.Helper()
	msg := &pb.IncomingMessage{Body: body, Expiry: 86400, Type: "application_test"}
	for _, id := range ids {
		raw, err := hex.DecodeString(id)
		if err != nil {
			t.Fatal(err)
		}
		msg.Receivers = append(msg.Receivers, &pb.Receiver{Id: raw, IsPrivate: true})
	}
	data, err := proto.Marshal(&pb.RequestBatch{Requests: []*pb.Request{{Command: &pb.Request_IncomingMessages{
		IncomingMessages: &pb.IncomingMessagesRequest{Messages: []*pb.IncomingMessage{msg}},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(s.internal+"/pub/?binaryMode=true&hostname=portal.test", "", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("protobuf publish: %d %s", resp.StatusCode, b)
	}
}

// peer is another user whose public channel a version-4 config lists.
type peer struct {
	userID   int
	publicID string
}

// makeConfigV4 is the version-4 config: the private channel carries its
// public id ("private:public.signature"), clients publish through /pubweb/,
// and publicChannels lists the user's and its peers' public ids.
func makeConfigV4(base string, userID int, privateID, publicID, sharedID string, peers ...peer) map[string]any {
	cfg := makeConfig(base, signatureKey, 4, privateID, sharedID)
	priv := cfg["channels"].(map[string]any)["private"].(map[string]any)
	priv["id"] = sign(signatureKey, privateID+":"+publicID)
	priv["public_id"] = publicID + "." + signPublic(signatureKey, publicID)
	public := map[string]any{}
	for _, p := range append(peers, peer{userID, publicID}) {
		public[fmt.Sprint(p.userID)] = map[string]any{
			"user_id": p.userID, "public_id": p.publicID, "signature": signPublic(signatureKey, p.publicID),
			"start": priv["start"], "end": priv["end"],
		}
	}
	cfg["publicChannels"] = public
	return cfg
}

func testV4Receives(t *testing.T, transport string) {
	ctx := testContext(t)
	srv := startServer(t)
	priv, pub, shared := newID(t), newID(t), newID(t)
	c := startPullClient(t, ctx, ClientInput{Config: makeConfigV4(srv.base, 1, priv, pub, shared), UserID: 1, Transport: transport})
	c.waitOnline(ctx)

	srv.publishProtobuf(t, body("application", "pbPrivate", `{"n":1,"s":"привет"}`), priv)
	checkMessage(t, c.nextMessage(ctx), "application", "pbPrivate", `{"n":1,"s":"привет"}`)
	srv.publishProtobuf(t, body("application", "pbShared", `{"n":2}`), shared)
	checkMessage(t, c.nextMessage(ctx), "application", "pbShared", `{"n":2}`)
	srv.publish(t, body("application", "textPrivate", `{"n":3}`), priv)
	checkMessage(t, c.nextMessage(ctx), "application", "textPrivate", `{"n":3}`)
	srv.publish(t, body("application", "textShared", `{"n":4}`), shared)
	e := c.nextMessage(ctx)
	checkMessage(t, e, "application", "textShared", `{"n":4}`)
	if e.Extra.Sender == nil || e.Extra.Sender.Type != 2 {
		t.Fatalf("backend message sender = %+v, want type 2 (BACKEND)", e.Extra.Sender)
	}
	srv.publishProtobuf(t, body("application", "sentinel", `{}`), priv)
	checkMessage(t, c.nextMessage(ctx), "application", "sentinel", `{}`)
}

func TestPullClientV4WebSocket(t *testing.T)   { testV4Receives(t, "websocket") }
func TestPullClientV4LongPolling(t *testing.T) { testV4Receives(t, "longpolling") }

// TestPullClientV4ClientMessages has two users message each other through
// their public channels, one on WebSocket (binary frames) and one on long
// polling (POST to the publish URL).
func TestPullClientV4ClientMessages(t *testing.T) {
	ctx := testContext(t)
	srv := startServer(t)
	priv1, pub1, priv2, pub2, shared := newID(t), newID(t), newID(t), newID(t), newID(t)
	c1 := startPullClient(t, ctx, ClientInput{Config: makeConfigV4(srv.base, 1, priv1, pub1, shared, peer{2, pub2}), UserID: 1, Transport: "websocket"})
	c2 := startPullClient(t, ctx, ClientInput{Config: makeConfigV4(srv.base, 2, priv2, pub2, shared, peer{1, pub1}), UserID: 2, Transport: "longpolling"})
	c1.waitOnline(ctx)
	c2.waitOnline(ctx)

	check := func(e Event, command, params, from string) {
		t.Helper()
		checkMessage(t, e, "application", command, params)
		if !e.Client || e.Extra.Sender == nil || e.Extra.Sender.Type != 1 || e.Extra.Sender.ID != from {
			t.Fatalf("got %+v (sender %+v), want client event %s from %s", e, e.Extra.Sender, command, from)
		}
	}
	c1.command(map[string]any{"cmd": "sendMessage", "users": []int{2}, "moduleId": "application", "command": "byUser", "params": map[string]any{"x": 1}})
	check(c2.nextMessage(ctx), "byUser", `{"x":1}`, pub1)
	c1.command(map[string]any{"cmd": "sendMessageToChannels", "channels": []string{pub2 + "." + signPublic(signatureKey, pub2)}, "moduleId": "application", "command": "byChannel", "params": map[string]any{"s": "два", "list": []any{1, nil}}})
	check(c2.nextMessage(ctx), "byChannel", `{"s":"два","list":[1,null]}`, pub1)
	// And back, from the long-polling client.
	c2.command(map[string]any{"cmd": "sendMessage", "users": []int{1}, "moduleId": "application", "command": "reply", "params": map[string]any{"ok": true}})
	check(c1.nextMessage(ctx), "reply", `{"ok":true}`, pub2)
	// Nothing else reached either of them.
	srv.publish(t, body("application", "sentinel", `{}`), shared)
	checkMessage(t, c1.nextMessage(ctx), "application", "sentinel", `{}`)
	checkMessage(t, c2.nextMessage(ctx), "application", "sentinel", `{}`)
}

func TestPullClientV4ResumeWithMid(t *testing.T) {
	ctx := testContext(t)
	srv := startServer(t)
	priv, pub, shared := newID(t), newID(t), newID(t)
	cfg := makeConfigV4(srv.base, 1, priv, pub, shared)
	c := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: 1, Transport: "websocket"})
	c.waitOnline(ctx)
	srv.publishProtobuf(t, body("application", "seen", `{"n":0}`), priv)
	first := c.nextMessage(ctx)
	checkMessage(t, first, "application", "seen", `{"n":0}`)
	c.Stop()
	for i := 1; i <= 3; i++ {
		srv.publishProtobuf(t, body("application", "missed", fmt.Sprintf(`{"n":%d}`, i)), priv)
	}
	c2 := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: 1, Transport: "websocket", MID: first.MID})
	for i := 1; i <= 3; i++ {
		checkMessage(t, c2.nextMessage(ctx), "application", "missed", fmt.Sprintf(`{"n":%d}`, i))
	}
	srv.publishProtobuf(t, body("application", "sentinel", `{}`), shared)
	checkMessage(t, c2.nextMessage(ctx), "application", "sentinel", `{}`)
}
