package realtime

import (
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/wire"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// A subscriber that stops reading fills its socket: the pool worker hands
// the rest of the burst to a goroutine of the connection's own, and the
// messages still arrive whole and in order once it reads again.
func TestWriterHandOffKeepsOrder(t *testing.T) {
	for _, mode := range ringModes(t) {
		for _, binary := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/binary=%v", mode.name, binary), func(t *testing.T) {
				// The reader stays away while 300 publishes run, which on a
				// busy machine takes longer than the usual write timeout: that
				// would drop it for being slow, which is not what this test is
				// about.
				ts := newTestServer(t, func(o *Options) { o.WriteTimeout = time.Hour; mode.tweak(o) })
				handOffKeepsOrder(t, ts, binary)
			})
		}
	}
}

func handOffKeepsOrder(t *testing.T, ts *testServer, binary bool) {
	priv, pub := newChannel(t), newChannel(t)
	q := "CHANNEL_ID=" + url.QueryEscape(ts.signer.SignPrivate(priv, pub)) + "&revision=19"
	if binary {
		q += "&binaryMode=true"
	}
	conn, br, _, err := ws.Dial(t.Context(), "ws"+strings.TrimPrefix(ts.URL, "http")+"/sub/?"+q)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ts.waitSubscribers(t, priv, 1)
	pad := strings.Repeat("x", 64<<10)
	const n = 300 // about 20 MB, unread: more than loopback socket buffers hold
	for i := range n {
		ts.publish(t, fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, pad), priv)
	}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, conn}
	next := 0
	for next < n {
		data, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			t.Fatalf("after %d messages: %v", next, err)
		}
		var bodies []string
		if binary {
			var b pb.ResponseBatch
			if err := proto.Unmarshal(data, &b); err != nil {
				t.Fatalf("after %d messages: %v", next, err)
			}
			for _, resp := range b.GetResponses() {
				for _, m := range resp.GetOutgoingMessages().GetMessages() {
					bodies = append(bodies, m.GetBody())
				}
			}
		} else {
			fs, err := wire.ParseTextFrames(data)
			if err != nil {
				t.Fatalf("after %d messages: %v", next, err)
			}
			for _, f := range fs {
				bodies = append(bodies, string(f.Text))
			}
		}
		for _, body := range bodies {
			if want := fmt.Sprintf(`{"i":%d,`, next); !strings.HasPrefix(body, want) || len(body) < len(pad) {
				t.Fatalf("message %d: got %.20s… (%d bytes)", next, body, len(body))
			}
			next++
		}
	}
}

func TestHeaderIntoMatchesGobwas(t *testing.T) {
	for _, h := range []ws.Header{
		{Fin: true, OpCode: ws.OpText, Length: 0},
		{Fin: true, OpCode: ws.OpText, Length: 125},
		{Fin: true, OpCode: ws.OpBinary, Length: 126},
		{Fin: true, OpCode: ws.OpBinary, Length: 0xFFFF},
		{Fin: true, OpCode: ws.OpText, Length: 0x10000},
		{Fin: false, OpCode: ws.OpContinuation, Length: 1 << 40},
		{Fin: true, OpCode: ws.OpPing, Length: 5, Masked: true, Mask: [4]byte{1, 2, 3, 4}},
		{Fin: true, OpCode: ws.OpText, Rsv: 4, Length: 3},
	} {
		var want strings.Builder
		if err := ws.WriteHeader(&want, h); err != nil {
			t.Fatal(err)
		}
		var buf [ws.MaxHeaderSize]byte
		if got := buf[:headerInto(buf[:], h)]; string(got) != want.String() {
			t.Errorf("%+v: got % x, want % x", h, got, want.String())
		}
	}
}
