package realtime

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

// discardConn is a socket that accepts every write at once, so the
// benchmark measures the server's own work per delivery: queueing,
// batching, framing and handing shared buffers to the socket.
type discardConn struct {
	net.Conn
	written atomic.Int64
}

func (c *discardConn) Write(p []byte) (int, error) {
	c.written.Add(int64(len(p)))
	return len(p), nil
}
func (c *discardConn) SetWriteDeadline(time.Time) error { return nil }
func (c *discardConn) SetReadDeadline(time.Time) error  { return nil }
func (c *discardConn) Close() error                     { return nil }

// BenchmarkFanOut publishes to one channel with 1,000 WebSocket sessions
// in each format and reports the cost per delivery. The formats should
// cost about the same: each message is encoded once per format and the
// sessions only frame and write shared bytes (JSON-RPC adds its per-session
// duplicate check).
func BenchmarkFanOut(b *testing.B) {
	for _, f := range []struct {
		name  string
		proto func() protocol
	}{
		{"text", func() protocol { return textProtocol{} }},
		{"json", func() protocol { return jsonProtocol{} }},
		{"protobuf", func() protocol { return protobufProtocol{} }},
		// A version 5 connection by CHANNEL_ID.
		{"jsonrpc", func() protocol { return &rpcConn{} }},
	} {
		b.Run(f.name, func(b *testing.B) {
			const subscribers = 1000
			br, srv, stop := benchServer(b)
			defer stop()
			ch := channel.ID{1}
			sessions := make([]*session, subscribers)
			for i := range sessions {
				s := newSession(srv, []channel.Element{{ID: ch}}, f.proto())
				sessions[i] = attachBench(b, s, &discardConn{})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				publishBench(b, br, ch)
			}
			waitWritten(b, br, sessions)
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subscribers), "ns/delivery")
		})
	}
}

// attachBench gives s a WebSocket transport over conn and subscribes it.
func attachBench(b *testing.B, s *session, conn net.Conn) *session {
	s.t = &wsConn{sess: s, conn: conn}
	if err := s.attach(context.Background(), message.ID{}, false); err != nil {
		b.Fatal(err)
	}
	return s
}

// benchBody is a typical 100-byte application event.
var benchBody = []byte(`{"module_id":"application","command":"bench","params":{"p":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`)

func publishBench(b *testing.B, br *memory.Broker, ch channel.ID) {
	m := &message.Message{Body: benchBody, Expiry: 60, Receivers: []message.Receiver{{ID: ch}}, Sender: message.Sender{Type: message.SenderBackend}}
	if err := br.Publish(context.Background(), m); err != nil {
		b.Fatal(err)
	}
}

// waitWritten returns once the broker has fanned out everything published
// and every session has written what it was given.
func waitWritten(b *testing.B, br *memory.Broker, sessions []*session) {
	if err := br.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	for _, s := range sessions {
		for {
			s.mu.Lock()
			idle := len(s.queue) == 0 && !s.sending
			s.mu.Unlock()
			if idle {
				break
			}
			runtime.Gosched()
		}
	}
}

// benchServer is a server on the embedded broker whose sessions queue
// without limit; stop ends both. Each run of a benchmark function has its
// own, so an earlier run's sessions are gone before the next.
func benchServer(b *testing.B) (*memory.Broker, *Server, func()) {
	h := hub.New()
	br, err := memory.New(memory.Options{HistoryPerChannel: 100}, h)
	if err != nil {
		b.Fatal(err)
	}
	opt := testOptions()
	opt.SendQueue = 1 << 20
	srv := New(opt, br, h, channel.NewSigner([]byte("k"), channel.SHA1), slog.New(slog.NewTextHandler(io.Discard, nil)))
	return br, srv, func() {
		_ = srv.Shutdown(context.Background())
		_ = br.Close(context.Background())
	}
}
