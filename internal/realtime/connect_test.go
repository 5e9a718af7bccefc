package realtime

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/channel"
)

// openSession picks the protocol from the query once, and only the literal
// "true" turns on jsonRpc and binaryMode, as Push server 2.x reads them;
// jsonRpc wins over binaryMode, binaryMode over format=json. A CHANNEL_ID
// signed with another key opens no session, whatever the protocol (the
// routes answer 4010).
func TestOpenSessionChoosesTheProtocol(t *testing.T) {
	ts := newTestServer(t, nil)
	ch := newChannel(t)
	for _, tc := range []struct {
		extra string
		want  string
		slot  int
	}{
		{"", "realtime.textProtocol", formatText.slot},
		{"format=json", "realtime.jsonProtocol", formatJSON.slot},
		{"binaryMode=true", "realtime.protobufProtocol", formatBinary.slot},
		{"binaryMode=1", "realtime.textProtocol", formatText.slot},
		{"binaryMode=true&format=json", "realtime.protobufProtocol", formatBinary.slot},
		{"jsonRpc=true", "*realtime.rpcConn", formatRPC.slot},
		{"jsonRpc=true&binaryMode=true", "*realtime.rpcConn", formatRPC.slot},
		{"jsonRpc=TRUE&format=json", "realtime.jsonProtocol", formatJSON.slot},
	} {
		q, err := url.ParseQuery(ts.subQuery([]channel.ID{ch}, tc.extra))
		if err != nil {
			t.Fatal(err)
		}
		sess, err := ts.rt.openSession(t.Context(), q)
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		if got := fmt.Sprintf("%T", sess.proto); got != tc.want || sess.format.slot != tc.slot {
			t.Errorf("%q: protocol %s with format slot %d, want %s with %d", tc.extra, got, sess.format.slot, tc.want, tc.slot)
		}
	}
	for _, extra := range []string{"", "format=json", "binaryMode=true", "jsonRpc=true"} {
		forged := channel.NewSigner([]byte("another key"), channel.SHA1).SignChannel(ch)
		q := url.Values{"CHANNEL_ID": {forged}}
		if extra != "" {
			k, v, _ := strings.Cut(extra, "=")
			q.Set(k, v)
		}
		if sess, err := ts.rt.openSession(t.Context(), q); err == nil || sess != nil {
			t.Errorf("%q with a forged signature: opened a session", extra)
		}
	}
}
