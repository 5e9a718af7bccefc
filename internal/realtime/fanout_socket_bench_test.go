package realtime

import (
	"io"
	"net"
	"testing"

	"github.com/pushpull/pushpull/internal/channel"
)

// hiddenConn hides the socket's SyscallConn, so its bursts go the way of a
// TLS connection's: a goroutine per burst with blocking writes.
type hiddenConn struct{ net.Conn }

// BenchmarkFanOutSockets publishes to 500 WebSocket sessions over real
// loopback sockets, whose readers discard, and reports the server-side
// cost per delivery including the system calls: the writer pool's
// non-blocking writev against a goroutine and a blocking write per burst.
func BenchmarkFanOutSockets(b *testing.B) {
	for _, bc := range []struct {
		name string
		wrap func(net.Conn) net.Conn
	}{
		{"pool", func(c net.Conn) net.Conn { return c }},
		{"goroutine-per-burst", func(c net.Conn) net.Conn { return hiddenConn{c} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			const subscribers = 500
			br, srv, stop := benchServer(b)
			defer stop()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			ch := channel.ID{1}
			sessions := make([]*session, subscribers)
			for i := range sessions {
				client, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer client.Close()
				go func() { _, _ = io.Copy(io.Discard, client) }()
				server, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				defer server.Close()
				s := newSession(srv, []channel.Element{{ID: ch}}, textProtocol{})
				sessions[i] = attachBench(b, s, bc.wrap(server))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				publishBench(b, br, ch)
				// One publish at a time, as at a moderate rate: every
				// delivery is its own write, nothing coalesces.
				waitWritten(b, br, sessions)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subscribers), "ns/delivery")
		})
	}
}
