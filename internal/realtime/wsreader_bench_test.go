package realtime

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
)

// BenchmarkReadPingPong is one client frame read and answered by the
// server: a ping and its pong, over one connection, with the reader driven
// by the poller (a goroutine started per readable event, the socket armed
// again after) or parked in Read on a goroutine of its own.
func BenchmarkReadPingPong(b *testing.B) {
	for _, bc := range []struct {
		name      string
		goroutine bool
	}{{"poller", false}, {"goroutine", true}} {
		b.Run(bc.name, func(b *testing.B) {
			h := hub.New()
			br, err := memory.New(memory.Options{HistoryPerChannel: 10}, h)
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close(context.Background())
			opt := testOptions()
			opt.GoroutineReaders = bc.goroutine
			signer := channel.NewSigner([]byte("k"), channel.SHA1)
			rt := New(opt, br, h, signer, slog.New(slog.NewTextHandler(io.Discard, nil)))
			ts := httptest.NewServer(rt.Handler())
			defer ts.Close()
			defer rt.Shutdown(context.Background())
			u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/sub/?CHANNEL_ID=" + signer.SignChannel(channel.ID{1})
			conn, rd, _, err := ws.Dial(context.Background(), u)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			var r io.Reader = conn
			if rd != nil {
				r = io.MultiReader(rd, conn)
			}
			var ping strings.Builder
			if err := ws.WriteFrame(&ping, ws.MaskFrameInPlace(ws.NewPingFrame([]byte("x")))); err != nil {
				b.Fatal(err)
			}
			frame := []byte(ping.String())
			payload := make([]byte, 125)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := conn.Write(frame); err != nil {
					b.Fatal(err)
				}
				h, err := ws.ReadHeader(r)
				if err != nil || h.OpCode != ws.OpPong {
					b.Fatalf("got %v, %v; want a pong", h, err)
				}
				if _, err := io.ReadFull(r, payload[:h.Length]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
