package interop

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestPullClientHarnessStarts checks the SDK loads under Node and a client
// can be built, so that a broken install reads as such and not as a server
// bug. It needs no server.
func TestPullClientHarnessStarts(t *testing.T) {
	ensureNodeModules(t)
	out, err := exec.CommandContext(testContext(t), "node", "pullclient.mjs", "--selftest").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != `{"event":"selftest","ok":true}` {
		t.Fatalf("selftest: %v\n%s", err, out)
	}
}

var midPattern = regexp.MustCompile(`^[0-9]{26}$`)

// checkMessage fails unless e is the message moduleID/command with params.
func checkMessage(t *testing.T, e Event, moduleID, command, params string) {
	t.Helper()
	var got, want any
	if err := json.Unmarshal(e.Params, &got); err != nil {
		t.Fatalf("params %s: %v", e.Params, err)
	}
	if err := json.Unmarshal([]byte(params), &want); err != nil {
		t.Fatal(err)
	}
	if e.Event != "message" || e.ModuleID != moduleID || e.Command != command || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %s, want message %s/%s %s", e.Line, moduleID, command, params)
	}
	if !midPattern.MatchString(e.MID) {
		t.Fatalf("client session mid %q is not 26 digits", e.MID)
	}
}

// testReceives publishes to the private and the shared channel, under
// different modules, and expects exactly those two messages in order.
func testReceives(t *testing.T, transport string) {
	ctx := testContext(t)
	srv := startServer(t)
	priv, shared := newID(t), newID(t)
	c := startPullClient(t, ctx, ClientInput{Config: makeConfig(srv.base, signatureKey, 3, priv, shared), UserID: 1, Transport: transport})
	c.waitOnline(ctx)

	// Raw U+2028 must reach the client although its frame regex stops at it
	// (docs/protocol.md, "Wire formats").
	const p1 = `{"n":1,"s":"привет \"\n` + "\u2028" + `","list":[1,2.5,null,true],"nested":{"a":{}}}`
	srv.publish(t, body("application", "toPrivate", p1), priv)
	checkMessage(t, c.nextMessage(ctx), "application", "toPrivate", p1)
	srv.publish(t, body("im", "toShared", `{"n":2}`), shared)
	checkMessage(t, c.nextMessage(ctx), "im", "toShared", `{"n":2}`)
	// Exactly those two: the next message is the sentinel published after.
	srv.publish(t, body("application", "sentinel", `{}`), priv)
	checkMessage(t, c.nextMessage(ctx), "application", "sentinel", `{}`)
}

func TestPullClientV3WebSocket(t *testing.T)   { testReceives(t, "websocket") }
func TestPullClientV3LongPolling(t *testing.T) { testReceives(t, "longpolling") }

// TestPullClientV3ResumeWithMid stops the client after one message and
// starts a new one with the mid it had: it must get exactly the messages
// published in between, in order, and then the live ones.
func TestPullClientV3ResumeWithMid(t *testing.T) {
	for _, transport := range []string{"websocket", "longpolling"} {
		t.Run(transport, func(t *testing.T) {
			ctx := testContext(t)
			srv := startServer(t)
			priv, shared := newID(t), newID(t)
			cfg := makeConfig(srv.base, signatureKey, 3, priv, shared)
			c := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: 1, Transport: transport})
			c.waitOnline(ctx)
			srv.publish(t, body("application", "seen", `{"n":0}`), priv)
			first := c.nextMessage(ctx)
			checkMessage(t, first, "application", "seen", `{"n":0}`)
			c.Stop()
			// The session the SDK would save on unload still points at that
			// message: nothing (such as an empty delivery) reset it.
			stopped := c.mustWaitFor(ctx, "stopped", func(e Event) bool { return e.Event == "stopped" || e.Event == "message" })
			if stopped.Event != "stopped" || stopped.MID != first.MID {
				t.Fatalf("at exit: %s, want stopped with mid %s", stopped.Line, first.MID)
			}

			for i := 1; i <= 3; i++ {
				srv.publish(t, body("application", "missed", fmt.Sprintf(`{"n":%d}`, i)), priv)
			}
			c2 := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: 1, Transport: transport, MID: first.MID})
			for i := 1; i <= 3; i++ {
				checkMessage(t, c2.nextMessage(ctx), "application", "missed", fmt.Sprintf(`{"n":%d}`, i))
			}
			// The sentinel, published after the replay, comes next: nothing
			// else (no repeat of "seen", no duplicate) arrived in between.
			srv.publish(t, body("application", "sentinel", `{}`), shared)
			checkMessage(t, c2.nextMessage(ctx), "application", "sentinel", `{}`)
		})
	}
}
