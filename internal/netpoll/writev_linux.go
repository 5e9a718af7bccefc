package netpoll

import (
	"fmt"
	"syscall"
	"unsafe"
)

// Writev writes many buffers to a socket in as few writev calls as it
// takes, without ever waiting for the socket. Its scratch space (the iovec
// array, the function handed to RawConn.Write) is reused from call to call,
// so a long-lived Writev allocates nothing per write. It is not safe for
// concurrent use.
type Writev struct {
	iov []syscall.Iovec
	// What WriteNow hands its system-call function (see there).
	writeFD func(fd uintptr) bool
	left    [][]byte
	err     error
}

// maxIOV is the most pieces one writev takes (IOV_MAX on Linux).
const maxIOV = 1024

// WriteNow writes as much of pieces as the socket takes without blocking
// and returns what is left (nil when everything went out). No write
// deadline is involved: nothing waits.
func (w *Writev) WriteNow(rc syscall.RawConn, pieces [][]byte) ([][]byte, error) {
	w.left, w.err = pieces, nil
	if w.writeFD == nil {
		w.writeFD = w.writeSome // a method value allocates: once per writer
	}
	err := rc.Write(w.writeFD)
	left := w.left
	w.left = nil
	if err == nil {
		err = w.err
	}
	if err != nil {
		return nil, fmt.Errorf("writev: %w", err)
	}
	if len(left) == 0 {
		return nil, nil
	}
	return left, nil
}

// writeSome is WriteNow's part with the descriptor: it writes w.left until
// the socket is full, leaving there what remains.
func (w *Writev) writeSome(fd uintptr) bool {
	for len(w.left) > 0 {
		vec := w.iov[:0]
		want := 0
		for _, p := range w.left {
			if len(vec) == maxIOV {
				break
			}
			if len(p) == 0 {
				continue
			}
			v := syscall.Iovec{Base: &p[0]}
			v.SetLen(len(p))
			vec = append(vec, v)
			want += len(p)
		}
		w.iov = vec
		if len(vec) == 0 {
			w.left = nil
			break
		}
		n, errno := writev(fd, vec)
		if errno == syscall.EINTR {
			continue
		}
		if errno == syscall.EAGAIN {
			break
		}
		if errno != 0 {
			w.err = errno
			break
		}
		w.left = Advance(w.left, n)
		if n < want {
			break // the socket is full
		}
	}
	clear(w.iov[:cap(w.iov)]) // drop the pointers into the frames
	return true               // never wait for the socket: the caller hands the rest off
}

func writev(fd uintptr, vec []syscall.Iovec) (int, syscall.Errno) {
	n, _, errno := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&vec[0])), uintptr(len(vec)))
	return int(n), errno
}
