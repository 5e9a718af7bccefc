package netpoll

import (
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/testkit"
)

// funcHandler is a Handler made of a function.
type funcHandler func()

func (f funcHandler) Readable() { f() }

// The handler runs once per arming, and again after rearm; a removed socket
// is forgotten, and a poller told to close stops with its last socket.
func TestPollerArmsOncePerEvent(t *testing.T) {
	p, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	client, server := testkit.TCPPair(t)
	rc, err := server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan byte, 10)
	tok, err := p.Reserve(funcHandler(func() {
		var b [1]byte
		if _, err := server.Read(b[:]); err != nil {
			t.Error(err)
			return
		}
		got <- b[0]
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Watch(rc, tok); err != nil {
		t.Fatal(err)
	}
	next := func() byte {
		t.Helper()
		select {
		case b := <-got:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("handler not run")
		}
		return 0
	}
	if _, err := client.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if b := next(); b != 'a' {
		t.Fatalf("read %q", b)
	}
	// Not armed again yet: this byte waits in the socket until rearm.
	if _, err := client.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		t.Fatalf("handler ran without being armed again (read %q)", b)
	case <-time.After(50 * time.Millisecond):
	}
	if err := p.Rearm(rc, tok); err != nil {
		t.Fatal(err)
	}
	if b := next(); b != 'b' {
		t.Fatalf("read %q", b)
	}
	p.CloseWhenIdle()
	if _, err := p.Reserve(funcHandler(func() {})); err == nil {
		t.Error("a closing poller took a new socket")
	}
	select {
	case <-p.done:
		t.Fatal("the poller stopped while a socket was still registered")
	default:
	}
	p.Remove(tok + 1<<tokenIndexBits) // another generation's token changes nothing
	select {
	case <-p.done:
		t.Fatal("a stale token removed the socket")
	default:
	}
	p.Remove(tok)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the poller did not stop after its last socket")
	}
}
