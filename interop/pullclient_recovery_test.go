package interop

import (
	"context"
	"fmt"
	"testing"
)

// stoppedAt runs a client until it has the "seen" message and stops it, as
// a closed page would; it returns the mid the page would resume from.
func stoppedAt(t *testing.T, ctx context.Context, cfg map[string]any, transport string, srv *server, priv string) string {
	t.Helper()
	c := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: 1, Transport: transport})
	c.waitOnline(ctx)
	srv.publish(t, body("application", "seen", `{"n":0}`), priv)
	first := c.nextMessage(ctx)
	checkMessage(t, first, "application", "seen", `{"n":0}`)
	c.Stop()
	return first.MID
}

// TestPullClientRecoversABacklog: the official client coming back 500
// messages behind gets all of them, oldest first and once each, over
// several long-poll answers or one WebSocket replay, and then live ones
// (issue 12 #1: it got the newest 100 and lost the rest).
func TestPullClientRecoversABacklog(t *testing.T) {
	for _, transport := range []string{"websocket", "longpolling"} {
		t.Run(transport, func(t *testing.T) {
			ctx := testContext(t)
			srv := startServer(t)
			priv, shared := newID(t), newID(t)
			cfg := makeConfig(srv.base, signatureKey, 3, priv, shared)
			mid := stoppedAt(t, ctx, cfg, transport, srv, priv)
			const backlog = 500
			for i := 1; i <= backlog; i++ {
				srv.publish(t, body("application", "missed", fmt.Sprintf(`{"n":%d}`, i)), priv)
			}
			c := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: 1, Transport: transport, MID: mid})
			for i := 1; i <= backlog; i++ {
				checkMessage(t, c.nextMessage(ctx), "application", "missed", fmt.Sprintf(`{"n":%d}`, i))
			}
			srv.publish(t, body("application", "sentinel", `{}`), shared)
			checkMessage(t, c.nextMessage(ctx), "application", "sentinel", `{}`)
		})
	}
}

// TestPullClientToldOfTrimmedHistory: a client whose mid is older than what
// history still holds gets config_expire where the gap is; the official
// client reloads its config once, reconnects from the mid it had reached and
// gets everything still held, then live messages.
func TestPullClientToldOfTrimmedHistory(t *testing.T) {
	for _, transport := range []string{"websocket", "longpolling"} {
		t.Run(transport, func(t *testing.T) {
			ctx := testContext(t)
			srv := startServer(t, "--history-per-channel", "100")
			priv, shared := newID(t), newID(t)
			cfg := makeConfig(srv.base, signatureKey, 3, priv, shared)
			mid := stoppedAt(t, ctx, cfg, transport, srv, priv)
			for i := 1; i <= 250; i++ {
				srv.publish(t, body("application", "missed", fmt.Sprintf(`{"n":%d}`, i)), priv)
			}
			c := startPullClient(t, ctx, ClientInput{Config: cfg, UserID: 1, Transport: transport, MID: mid})
			// The history holds 151..250: the command comes first, and the
			// client, started with its config, fetches it again (once: it
			// comes back with a mid past the gap) while it hands the
			// messages to the app.
			reloads, next := 0, 151
			for next <= 251 {
				e := c.mustWaitFor(ctx, "messages and the config reload", func(e Event) bool { return e.Event == "rest" || e.Event == "message" })
				if e.Event == "rest" {
					reloads++
					continue
				}
				if next == 251 {
					checkMessage(t, e, "application", "sentinel", `{}`)
					break
				}
				checkMessage(t, e, "application", "missed", fmt.Sprintf(`{"n":%d}`, next))
				if next++; next == 251 {
					// After the reconnect: published once the client is back.
					c.mustWaitFor(ctx, "online again", func(e Event) bool {
						if e.Event == "rest" {
							reloads++
						}
						return e.Event == "status" && e.Status == "online"
					})
					srv.publish(t, body("application", "sentinel", `{}`), shared)
				}
			}
			if reloads != 1 {
				t.Fatalf("the client reloaded its config %d times, want once", reloads)
			}
		})
	}
}
