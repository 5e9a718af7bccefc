package netpoll

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"unsafe"

	"github.com/pushpull/pushpull/internal/testkit"
)

// newTestRing sets up a ring, or skips where the kernel refuses io_uring:
// that case is the callers' fallback to Writev, tested with them.
func newTestRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := NewRing(entries)
	if err != nil {
		if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EPERM) {
			t.Skipf("io_uring refused here: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// fdOf returns the socket's descriptor; the test keeps the connection open
// for as long as it uses it.
func fdOf(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// The structures shared with the kernel have its sizes.
func TestRingABISizes(t *testing.T) {
	if n := unsafe.Sizeof(uringSQE{}); n != 64 {
		t.Errorf("submission entry: %d bytes, want 64", n)
	}
	if n := unsafe.Sizeof(uringCQE{}); n != 16 {
		t.Errorf("completion entry: %d bytes, want 16", n)
	}
	if n := unsafe.Sizeof(uringParams{}); n != 120 {
		t.Errorf("setup parameters: %d bytes, want 120", n)
	}
}

// One call writes to every socket of a batch that fits the ring, each its
// own pieces in order; a batch larger than the ring takes more calls.
func TestRingWritesManySockets(t *testing.T) {
	for _, tt := range []struct {
		name    string
		entries uint32
		sockets int
		calls   int
	}{
		{"one call", 64, 40, 1},
		{"more sockets than entries", 8, 20, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRing(t, tt.entries)
			clients := make([]net.Conn, tt.sockets)
			want := make([][]byte, tt.sockets)
			ws := make([]RingWrite, tt.sockets)
			for i := range ws {
				client, server := testkit.TCPPair(t)
				clients[i] = client
				pieces := [][]byte{[]byte("frame "), {}, bytes.Repeat([]byte{byte('a' + i%26)}, i+1), []byte("\n")}
				want[i] = bytes.Join(pieces, nil)
				ws[i] = RingWrite{FD: fdOf(t, server), Pieces: pieces}
			}
			if err := r.Writev(ws); err != nil {
				t.Fatal(err)
			}
			if r.Enters() != tt.calls {
				t.Errorf("%d io_uring_enter calls, want %d", r.Enters(), tt.calls)
			}
			for i, w := range ws {
				if w.Err != nil || w.N != len(want[i]) {
					t.Fatalf("socket %d: wrote %d, %v; want %d bytes", i, w.N, w.Err, len(want[i]))
				}
				got := make([]byte, len(want[i]))
				if _, err := io.ReadFull(clients[i], got); err != nil || !bytes.Equal(got, want[i]) {
					t.Fatalf("socket %d read %q, %v; want %q", i, got, err, want[i])
				}
			}
		})
	}
}

// A socket that cannot take the whole burst takes what it can (or nothing:
// EAGAIN) and the write returns at once, as a non-blocking writev does;
// what is left, written later, completes the stream byte for byte. One
// socket's error does not stop the others' writes.
func TestRingStopsAtAFullSocketAndReportsErrors(t *testing.T) {
	r := newTestRing(t, 8)
	client, server := testkit.TCPPair(t)
	if err := client.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if err := server.(*net.TCPConn).SetWriteBuffer(4096); err != nil {
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
	okClient, okServer := testkit.TCPPair(t)
	ws := []RingWrite{
		{FD: fdOf(t, server), Pieces: pieces},
		// Not a descriptor: the kernel refuses that write alone.
		{FD: -1, Pieces: [][]byte{[]byte("lost")}},
		{FD: fdOf(t, okServer), Pieces: [][]byte{[]byte("after")}},
	}
	if err := r.Writev(ws); err != nil {
		t.Fatal(err)
	}
	if ws[0].Err != nil && !errors.Is(ws[0].Err, syscall.EAGAIN) {
		t.Fatalf("full socket: %v", ws[0].Err)
	}
	if ws[0].N >= want.Len() {
		t.Fatalf("%d bytes went into a socket nobody reads", ws[0].N)
	}
	if !errors.Is(ws[1].Err, syscall.EBADF) {
		t.Errorf("no descriptor: wrote %d, %v; want EBADF", ws[1].N, ws[1].Err)
	}
	if ws[2].Err != nil || ws[2].N != len("after") {
		t.Errorf("the socket after the failed one: wrote %d, %v", ws[2].N, ws[2].Err)
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	for _, p := range Advance(pieces, ws[0].N) {
		if _, err := server.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	server.Close()
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("read %d bytes, want %d as written", len(b), want.Len())
	}
	b := make([]byte, len("after"))
	if _, err := io.ReadFull(okClient, b); err != nil || string(b) != "after" {
		t.Errorf("read %q, %v after the failed write", b, err)
	}
}
