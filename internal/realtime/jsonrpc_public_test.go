package realtime

import (
	"testing"
)

// A version 5 token lists the private channel's public id after it, as
// config.get writes it (shared, private, public). Another client's publish
// to that public id, as BX.PullClient's sendMessageToChannels sends it,
// reaches the connection once.
func TestV5PublishToTokenPublicID(t *testing.T) {
	ts := newTestServer(t, nil)
	shared, priv, pub := newChannel(t), newChannel(t), newChannel(t)
	alice := ts.dialRPC(t, "token="+ts.tokenFor(1, shared, priv, pub)+"&jsonRpc=true")
	bob := ts.dialRPC(t, "token="+ts.tokenFor(2)+"&jsonRpc=true")
	ts.waitUser(t, 1, 1)
	ts.waitUser(t, 2, 1)
	ts.waitSubscribers(t, priv, 1)

	if r := bob.call(t, "publish", `{"channelList":["`+ts.signer.SignPublic(pub)+`"],"body":{"n":1}}`); string(r.Result) != "true" {
		t.Fatalf("publish to the public id: %+v", r)
	}
	if m := alice.next(t); string(m.Body) != `{"n":1}` || string(m.Sender) != `{"type":1,"id":"2"}` {
		t.Fatalf("alice got %+v", m)
	}
	// Alice publishes as her public id, and a sentinel shows no second copy.
	if r := bob.call(t, "publish", `{"userList":[1],"body":{"sentinel":true}}`); string(r.Result) != "true" {
		t.Fatalf("sentinel: %+v", r)
	}
	if m := alice.next(t); string(m.Body) != `{"sentinel":true}` {
		t.Fatalf("alice got %+v, want the sentinel", m)
	}
}
