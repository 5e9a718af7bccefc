package netpoll

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/pushpull/pushpull/internal/testkit"
)

// WriteNow writes what the socket takes without waiting and returns the
// rest; the rest, written later, completes the stream byte for byte.
func TestWriteNowStopsAtAFullSocket(t *testing.T) {
	client, server := testkit.TCPPair(t)
	// Small buffers, so that the socket fills on any machine.
	if err := client.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if err := server.(*net.TCPConn).SetWriteBuffer(4096); err != nil {
		t.Fatal(err)
	}
	rc, err := server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// Far more than a loopback socket buffers, in pieces of every size,
	// empty ones included, and more pieces than one writev takes.
	var pieces [][]byte
	var want bytes.Buffer
	for i := range 3000 {
		p := bytes.Repeat([]byte{byte(i)}, i%1500)
		pieces = append(pieces, p)
		want.Write(p)
	}
	var w Writev
	rest, err := w.WriteNow(rc, pieces)
	if err != nil {
		t.Fatal(err)
	}
	if rest == nil {
		t.Fatalf("%d bytes went into a socket nobody reads", want.Len())
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	for _, p := range rest {
		if _, err := server.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	server.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("read %d bytes, want %d as written", len(b), want.Len())
	}
}
