package realtime

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/testkit"
)

// TestRestartDuringHandshakeIsDelivered: a shutdown that reaches a
// WebSocket between its subscribe and the end of its handshake (no socket
// yet) must still send it server_restart and close it with 1001 once the
// socket is there. It used to wake the writer at once, which found no
// socket, killed the session, and the client saw its connection drop with
// no server_restart (and so reconnected at once instead of waiting).
func TestRestartDuringHandshakeIsDelivered(t *testing.T) {
	ts := newTestServer(t, nil)
	srv := ts.rt
	sess := newSession(srv, []channel.Element{{ID: newChannel(t)}}, textProtocol{})
	c := &wsConn{sess: sess}
	sess.t = c
	if err := sess.subscribe(t.Context()); err != nil {
		t.Fatal(err)
	}
	restart, err := srv.serverRestartMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	sess.restart(restart) // what Shutdown does to every registered session

	client, server := testkit.TCPPair(t)
	if !c.setConn(server, server) {
		t.Fatal("the session was closed before its socket arrived")
	}
	if err := sess.replay(t.Context(), message.ID{}, false); err != nil {
		t.Fatal(err)
	}
	if err := client.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		h, err := ws.ReadHeader(client)
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(client, payload); err != nil {
			t.Fatal(err)
		}
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(payload)
			if code != ws.StatusGoingAway {
				t.Errorf("closed with %d, want 1001", code)
			}
			break
		}
		got = append(got, payload...)
	}
	if !bytes.Contains(got, []byte(`"command":"server_restart"`)) {
		t.Errorf("frames before the close: %q, want server_restart", got)
	}
}
