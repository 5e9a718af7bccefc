package interop

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestPullClientHarnessStarts checks the SDK loads under Node at all, so
// that a broken install reads as such and not as a server bug.
func TestPullClientHarnessStarts(t *testing.T) {
	out, err := exec.Command("node", "pullclient.mjs", `{"selftest":true}`).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != `{"event":"selftest","ok":true}` {
		t.Fatalf("selftest: %v\n%s", err, out)
	}
}

func checkMessage(t *testing.T, e event, command string, params string) {
	t.Helper()
	var got, want any
	if err := json.Unmarshal(e.Params, &got); err != nil {
		t.Fatalf("params %s: %v", e.Params, err)
	}
	if err := json.Unmarshal([]byte(params), &want); err != nil {
		t.Fatal(err)
	}
	if e.ModuleID != "application" || e.Command != command || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %s/%s %s, want application/%s %s", e.ModuleID, e.Command, e.Params, command, params)
	}
	if len(e.MID) != 26 {
		t.Fatalf("client mid %q is not 26 digits", e.MID)
	}
}

func body(command string, params string) string {
	return `{"module_id":"application","command":"` + command + `","params":` + params + `,"extra":{"server_time_unix":0,"revision_web":19,"revision_mobile":3}}`
}

func testReceivesOnBothChannels(t *testing.T, transport string) {
	srv := startServer(t, t.TempDir())
	priv, shared := newID(t), newID(t)
	c := startPullClient(t, clientInput{Config: makeConfig(srv.base, priv, shared), UserID: 1, Transport: transport})
	c.waitOnline(t)

	srv.publish(t, body("toPrivate", `{"n":1,"s":"привет"}`), priv)
	checkMessage(t, c.nextMessage(t), "toPrivate", `{"n":1,"s":"привет"}`)
	srv.publish(t, body("toShared", `{"n":2}`), shared)
	checkMessage(t, c.nextMessage(t), "toShared", `{"n":2}`)
}

func TestPullClientV3WebSocket(t *testing.T)   { testReceivesOnBothChannels(t, "websocket") }
func TestPullClientV3LongPolling(t *testing.T) { testReceivesOnBothChannels(t, "longpolling") }

// TestPullClientV3ResumeWithMid restarts the client with the mid it had and
// checks it gets exactly the messages published while it was away.
func testResume(t *testing.T, transport string) {
	srv := startServer(t, t.TempDir())
	priv, shared := newID(t), newID(t)
	cfg := makeConfig(srv.base, priv, shared)
	c := startPullClient(t, clientInput{Config: cfg, UserID: 1, Transport: transport})
	c.waitOnline(t)
	srv.publish(t, body("seen", `{"n":0}`), priv)
	first := c.nextMessage(t)
	checkMessage(t, first, "seen", `{"n":0}`)
	c.stop()

	for i := 1; i <= 3; i++ {
		srv.publish(t, body("missed", fmt.Sprintf(`{"n":%d}`, i)), priv)
	}
	c2 := startPullClient(t, clientInput{Config: cfg, UserID: 1, Transport: transport, MID: first.MID})
	for i := 1; i <= 3; i++ {
		checkMessage(t, c2.nextMessage(t), "missed", fmt.Sprintf(`{"n":%d}`, i))
	}
	// A sentinel published after the replay comes next: nothing else (no
	// duplicate of the seen one, no repeat) arrived in between.
	srv.publish(t, body("sentinel", `{}`), shared)
	checkMessage(t, c2.nextMessage(t), "sentinel", `{}`)
}

func TestPullClientV3ResumeWithMidWebSocket(t *testing.T)   { testResume(t, "websocket") }
func TestPullClientV3ResumeWithMidLongPolling(t *testing.T) { testResume(t, "longpolling") }
