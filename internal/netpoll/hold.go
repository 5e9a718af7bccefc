package netpoll

import "syscall"

// FDHold runs a function with many sockets' descriptors held open, for a
// system call that names them all at once (Ring.Writev): RawConn.Control
// keeps one descriptor from being closed, and its number reused by another
// connection, while its callback runs, so the holds nest, one callback
// inside the other. Its scratch space is reused from call to call; it is
// not safe for concurrent use.
type FDHold struct {
	rcs  []syscall.RawConn
	fds  []int
	f    func()
	i    int
	held func(fd uintptr) // h.take, allocated once
}

// Run sets fds[i] to the descriptor of rcs[i], or to -1 for a socket
// already closed, and calls f while all of them are held. fds must be as
// long as rcs.
func (h *FDHold) Run(rcs []syscall.RawConn, fds []int, f func()) {
	if h.held == nil {
		h.held = h.take
	}
	h.rcs, h.fds, h.f, h.i = rcs, fds, f, 0
	h.next()
	h.rcs, h.fds, h.f = nil, nil, nil
}

// next holds the next socket, whose callback goes on with the rest, or
// calls f once all are held.
func (h *FDHold) next() {
	for h.i < len(h.rcs) {
		i := h.i
		h.i++
		if err := h.rcs[i].Control(h.held); err == nil {
			return // its callback went on
		}
		h.fds[i] = -1 // closed: the kernel refuses the write (EBADF)
	}
	h.f()
}

func (h *FDHold) take(fd uintptr) {
	h.fds[h.i-1] = int(fd)
	h.next()
}
