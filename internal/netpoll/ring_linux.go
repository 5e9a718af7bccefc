package netpoll

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ring hands the kernel many sockets' writes in one system call: one
// io_uring submission entry (IORING_OP_WRITEV) per socket, all submitted
// and waited for with one io_uring_enter, where Writev makes one writev
// call per socket. It is the least of io_uring this needs, on
// golang.org/x/sys/unix. It is not safe for concurrent use: each writer
// goroutine has its own.
//
// The writes never wait inside the kernel: the runtime's sockets are
// non-blocking, and io_uring then completes a write that would block with
// EAGAIN, or with the bytes the socket took, instead of waiting for room,
// exactly as a non-blocking writev returns. The caller finishes such a
// write its own way.
type Ring struct {
	fd int
	// The three shared memory areas (the submission ring, the completion
	// ring, the submission entries); both rings may be one (single).
	sqMem, cqMem, sqeMem []byte
	single               bool

	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []uringSQE

	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []uringCQE

	entries uint32
	iov     []syscall.Iovec // the batch's iovecs, reused
	from    []int           // where each write's iovecs start in iov
	enters  int
}

// RingWrite is one socket's writev in a batch: the descriptor and the
// pieces to write, and, once the batch is done, what the write did: N
// bytes taken (maybe fewer than the pieces hold; 0 with Err EAGAIN when the
// socket was full), or Err.
//
// The descriptor must stay open until Writev returns: the caller holds
// whatever keeps its connection from being closed meanwhile.
type RingWrite struct {
	FD     int
	Pieces [][]byte
	N      int
	Err    error
}

// The kernel's ABI, from linux/io_uring.h.
const (
	uringOpWritev = 2

	uringOffSQRing = 0
	uringOffCQRing = 0x8000000
	uringOffSQEs   = 0x10000000

	uringEnterGetEvents = 1 << 0

	uringFeatSingleMmap = 1 << 0

	// uringSetupSubmitAll: keep submitting the batch when one entry fails
	// to start (its error comes as its completion), Linux 5.18.
	uringSetupSubmitAll = 1 << 7
)

type uringSQOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type uringCQOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  uringSQOffsets
	cqOff                                                                  uringCQOffsets
}

// uringSQE is struct io_uring_sqe (64 bytes) with the fields a write uses.
type uringSQE struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	rwFlags  uint32
	userData uint64
	_        [3]uint64
}

// uringCQE is struct io_uring_cqe (16 bytes).
type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// NewRing sets up a ring of at least entries submission entries (the
// kernel rounds up to a power of two, at most 32768): how many sockets one
// call writes to; a batch of more takes more calls. It fails where the
// kernel refuses io_uring (ENOSYS before Linux 5.1, EPERM when
// kernel.io_uring_disabled or a seccomp filter forbids it): the caller
// writes with Writev instead.
func NewRing(entries uint32) (*Ring, error) {
	p := uringParams{flags: uringSetupSubmitAll}
	fd, err := uringSetup(entries, &p)
	if errors.Is(err, syscall.EINVAL) {
		// A kernel older than SUBMIT_ALL: without it, a batch stops at an
		// entry that fails to start, and submit submits the rest again.
		p = uringParams{}
		fd, err = uringSetup(entries, &p)
	}
	if err != nil {
		return nil, fmt.Errorf("io_uring_setup: %w", err)
	}
	r := &Ring{fd: fd, entries: p.sqEntries}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func uringSetup(entries uint32, p *uringParams) (int, error) {
	fd, _, errno := syscall.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func (r *Ring) mmap(p *uringParams) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(uringCQE{}))
	r.single = p.features&uringFeatSingleMmap != 0
	if r.single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	if r.sqMem, err = unix.Mmap(r.fd, uringOffSQRing, sqSize, prot, flags); err != nil {
		return fmt.Errorf("mmap io_uring submission ring: %w", err)
	}
	r.cqMem = r.sqMem
	if !r.single {
		if r.cqMem, err = unix.Mmap(r.fd, uringOffCQRing, cqSize, prot, flags); err != nil {
			return fmt.Errorf("mmap io_uring completion ring: %w", err)
		}
	}
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(uringSQE{}))
	if r.sqeMem, err = unix.Mmap(r.fd, uringOffSQEs, sqeSize, prot, flags); err != nil {
		return fmt.Errorf("mmap io_uring submission entries: %w", err)
	}
	at := func(mem []byte, off uint32) unsafe.Pointer { return unsafe.Pointer(&mem[off]) }
	r.sqTail = (*uint32)(at(r.sqMem, p.sqOff.tail))
	r.sqMask = *(*uint32)(at(r.sqMem, p.sqOff.ringMask))
	r.sqArray = unsafe.Slice((*uint32)(at(r.sqMem, p.sqOff.array)), p.sqEntries)
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead = (*uint32)(at(r.cqMem, p.cqOff.head))
	r.cqTail = (*uint32)(at(r.cqMem, p.cqOff.tail))
	r.cqMask = *(*uint32)(at(r.cqMem, p.cqOff.ringMask))
	r.cqes = unsafe.Slice((*uringCQE)(at(r.cqMem, p.cqOff.cqes)), p.cqEntries)
	return nil
}

// Close releases the ring. Writev must not be running.
func (r *Ring) Close() {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem)
	}
	if r.cqMem != nil && !r.single {
		_ = unix.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		_ = unix.Munmap(r.sqMem)
	}
	if r.fd >= 0 {
		_ = syscall.Close(r.fd)
	}
	*r = Ring{fd: -1}
}

// Enters returns how many io_uring_enter calls the ring made so far.
func (r *Ring) Enters() int { return r.enters }

// Writev writes each ws[i].Pieces (at most maxIOV of them; the rest is
// left as if the socket were full) to ws[i].FD, as many sockets at a time
// as the ring holds, each batch in one io_uring_enter, and sets each
// ws[i].N and Err. It returns once the kernel is done with every entry, so
// the pieces need to live only as long as the call. An error means the
// ring itself failed: which writes were done is not known, and the ring
// must not be used again.
func (r *Ring) Writev(ws []RingWrite) error {
	for len(ws) > 0 {
		n := min(len(ws), int(r.entries))
		err := r.batch(ws[:n])
		clear(r.iov[:cap(r.iov)]) // drop the pointers into the pieces
		if err != nil {
			return err
		}
		ws = ws[n:]
	}
	return nil
}

func (r *Ring) batch(ws []RingWrite) error {
	// The iovecs first, all of them: their array must not move once the
	// kernel is told where it is.
	r.iov, r.from = r.iov[:0], r.from[:0]
	for i := range ws {
		ws[i].N, ws[i].Err = 0, errNotDone
		r.from = append(r.from, len(r.iov))
		n := 0
		for _, p := range ws[i].Pieces {
			if n == maxIOV {
				break
			}
			if len(p) > 0 {
				v := syscall.Iovec{Base: &p[0]}
				v.SetLen(len(p))
				r.iov = append(r.iov, v)
				n++
			}
		}
	}
	// Only this goroutine writes the tail; the kernel moves the head.
	tail := *r.sqTail
	for i := range ws {
		idx := tail & r.sqMask
		sqe := &r.sqes[idx]
		*sqe = uringSQE{opcode: uringOpWritev, fd: int32(ws[i].FD), userData: uint64(i)}
		end := len(r.iov)
		if i+1 < len(r.from) {
			end = r.from[i+1]
		}
		if end > r.from[i] {
			sqe.addr = uint64(uintptr(unsafe.Pointer(&r.iov[r.from[i]])))
			sqe.len = uint32(end - r.from[i])
		}
		r.sqArray[idx] = idx
		tail++
	}
	// The release store publishes the entries to the kernel.
	atomic.StoreUint32(r.sqTail, tail)

	toSubmit, done := uint32(len(ws)), 0
	for done < len(ws) {
		submitted, err := r.enter(toSubmit, uint32(len(ws)-done))
		if err != nil && err != syscall.EINTR {
			// Entries not taken would go with the next batch, pointing at
			// memory the caller may since have reused.
			return fmt.Errorf("io_uring_enter: %w", err)
		}
		toSubmit -= submitted
		done += r.reap(ws)
	}
	return nil
}

// errNotDone marks a write whose completion has not been read yet.
var errNotDone = errors.New("io_uring write not completed")

// enter submits toSubmit entries and waits until at least wait
// completions are there; the wait can end early on a signal (the Go
// runtime's preemption), hence the caller's loop.
func (r *Ring) enter(toSubmit, wait uint32) (uint32, error) {
	r.enters++
	n, _, errno := syscall.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(wait), uringEnterGetEvents, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return uint32(n), nil
}

// reap reads the completions there are into ws and returns how many.
func (r *Ring) reap(ws []RingWrite) int {
	head := *r.cqHead
	tail := atomic.LoadUint32(r.cqTail) // acquire: the entries up to tail are written
	n := 0
	for ; head != tail; head++ {
		c := r.cqes[head&r.cqMask]
		if c.userData < uint64(len(ws)) {
			w := &ws[c.userData]
			if c.res >= 0 {
				w.N, w.Err = int(c.res), nil
			} else {
				w.Err = syscall.Errno(-c.res)
			}
		}
		n++
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}
