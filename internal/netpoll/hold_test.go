package netpoll

import (
	"net"
	"syscall"
	"testing"

	"github.com/pushpull/pushpull/internal/testkit"
)

func rawConn(t *testing.T, c net.Conn) syscall.RawConn {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// A descriptor held by FDHold stays open, its number not reusable, even
// when its connection is closed meanwhile; one already closed is -1.
func TestFDHoldKeepsDescriptorsOpen(t *testing.T) {
	_, a := testkit.TCPPair(t)
	_, b := testkit.TCPPair(t)
	_, gone := testkit.TCPPair(t)
	rcs := []syscall.RawConn{rawConn(t, a), rawConn(t, gone), rawConn(t, b)}
	if err := gone.Close(); err != nil {
		t.Fatal(err)
	}
	fds := make([]int, len(rcs))
	var h FDHold
	ran := false
	closed := make(chan error, 1)
	h.Run(rcs, fds, func() {
		ran = true
		// The runtime's Close waits until the descriptor is closed, which
		// is once the hold ends: from another goroutine.
		go func() { closed <- a.Close() }()
		if _, err := fcntl(fds[0]); err != nil {
			t.Errorf("descriptor %d of a connection being closed under the hold: %v", fds[0], err)
		}
		select {
		case <-closed:
			t.Error("a connection's Close returned while its descriptor was held")
		default:
		}
	})
	if !ran {
		t.Fatal("the function never ran")
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if fds[0] < 0 || fds[2] < 0 || fds[1] != -1 {
		t.Fatalf("descriptors %v, want two and -1 for the closed connection", fds)
	}
	if _, err := fcntl(fds[2]); err != nil {
		t.Errorf("descriptor of an open connection: %v", err)
	}
}

func fcntl(fd int) (uintptr, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}
