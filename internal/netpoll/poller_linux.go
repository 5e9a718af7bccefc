package netpoll

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
)

// Poller watches sockets for readability with one epoll instance, so that
// an idle connection needs no goroutine parked in Read: a goroutine is
// started when its socket has something to read, and the socket is armed
// again when that goroutine is done (EPOLLONESHOT, so at most one runs per
// socket). The runtime's own netpoller cannot be asked this; it only wakes
// goroutines that are already waiting.
type Poller struct {
	epfd int
	wake [2]int // a pipe; a byte written to wake[1] ends the wait loop
	done chan struct{}
	log  *slog.Logger

	mu     sync.Mutex
	slots  []pollSlot // by token index; slot 0 is the stop pipe's
	free   []uint32   // indexes of unused slots
	live   int        // sockets registered
	closed bool       // no new sockets; stop once the last is removed

	stopOnce sync.Once
}

// Handler is run, on a goroutine of its own, when its socket is
// readable.
type Handler interface{ Readable() }

// pollSlot is a registered socket's handler. A token is the slot's index
// and its generation: an event read just before its socket was removed and
// the slot reused names an old generation and is dropped, so no socket ever
// gets a second handler running.
type pollSlot struct {
	h   Handler
	gen uint32
}

// Tokens fit epoll's 32-bit data: 20 bits of index (a million sockets),
// 12 of generation.
const (
	tokenIndexBits = 20
	tokenIndexMask = 1<<tokenIndexBits - 1
	tokenGenMask   = 1<<(32-tokenIndexBits) - 1
)

// wakeToken is the token of the stop pipe; sockets get the others.
const wakeToken = 0

// ErrFull: the poller holds as many sockets as its tokens can name.
var ErrFull = errors.New("poller full")

// readEvents are what a socket is armed for: readable, or the peer gone.
// EPOLLERR and EPOLLHUP are always reported.
const readEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// pollBatch is how many events one wait returns at most.
const pollBatch = 256

func New(log *slog.Logger) (*Poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	p := &Poller{epfd: epfd, done: make(chan struct{}), log: log, slots: make([]pollSlot, 1)}
	if err := syscall.Pipe2(p.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: wakeToken}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	go p.loop()
	return p, nil
}

func (p *Poller) closeFDs() {
	_ = syscall.Close(p.wake[0])
	_ = syscall.Close(p.wake[1])
	_ = syscall.Close(p.epfd)
}

// loop waits for readable sockets and starts their handlers. It holds a
// thread while it waits (epoll_wait is a blocking system call), one for the
// whole server.
func (p *Poller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, pollBatch)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// Only a bad epoll descriptor fails here, which is a bug: the
			// sockets it watches would never be read again. Take no new ones
			// (they get goroutine readers) and say so.
			p.mu.Lock()
			p.closed = true
			p.mu.Unlock()
			p.log.Error("websocket poller stopped", "err", err)
			return
		}
		for i := range n {
			tok := uint32(events[i].Fd)
			if tok == wakeToken {
				return
			}
			if h := p.handler(tok); h != nil {
				go h.Readable()
			}
		}
	}
}

// Reserve returns a token for a socket whose handler is h, to be run on a
// new goroutine each time the socket becomes readable after being armed by
// Watch or Rearm. Call Remove when the socket is closed.
func (p *Poller) Reserve(h Handler) (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	var idx uint32
	if n := len(p.free); n > 0 {
		idx = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		if len(p.slots) > tokenIndexMask {
			return 0, ErrFull
		}
		idx = uint32(len(p.slots))
		p.slots = append(p.slots, pollSlot{})
	}
	sl := &p.slots[idx]
	sl.gen = (sl.gen + 1) & tokenGenMask
	sl.h = h
	p.live++
	return sl.gen<<tokenIndexBits | idx, nil
}

// handler returns the handler of tok, nil if it is no longer registered.
func (p *Poller) handler(tok uint32) Handler {
	idx, gen := tok&tokenIndexMask, tok>>tokenIndexBits
	p.mu.Lock()
	defer p.mu.Unlock()
	if idx == 0 || int(idx) >= len(p.slots) || p.slots[idx].gen != gen {
		return nil
	}
	return p.slots[idx].h
}

// Watch adds rc's socket under tok and arms it.
func (p *Poller) Watch(rc syscall.RawConn, tok uint32) error {
	// Under mu, so that the first handler's start (looked up under mu)
	// comes after everything the caller did, for the race detector too.
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ctl(rc, syscall.EPOLL_CTL_ADD, tok)
}

// ErrClosed: the poller takes no new sockets.
var ErrClosed = errors.New("poller closed")

// Rearm watches the socket again after its handler is done. If it is
// readable already, the handler runs again at once.
func (p *Poller) Rearm(rc syscall.RawConn, tok uint32) error {
	// Under mu, as in watch: the next handler starts after this one ended.
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ctl(rc, syscall.EPOLL_CTL_MOD, tok)
}

func (p *Poller) ctl(rc syscall.RawConn, op int, tok uint32) error {
	var ctlErr error
	// Control holds the descriptor open: it cannot be closed and reused by
	// another connection while epoll_ctl runs.
	err := rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: readEvents, Fd: int32(tok)}
		ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err == nil && ctlErr != nil {
		err = fmt.Errorf("epoll_ctl: %w", ctlErr)
	}
	return err
}

// Remove forgets a socket. Its epoll registration ends when the socket is
// closed; an event already on its way finds no handler.
func (p *Poller) Remove(tok uint32) {
	idx, gen := tok&tokenIndexMask, tok>>tokenIndexBits
	p.mu.Lock()
	if idx == 0 || int(idx) >= len(p.slots) || p.slots[idx].gen != gen || p.slots[idx].h == nil {
		p.mu.Unlock()
		return
	}
	p.slots[idx].h = nil
	p.free = append(p.free, idx)
	p.live--
	last := p.closed && p.live == 0
	p.mu.Unlock()
	if last {
		p.stop()
	}
}

// CloseWhenIdle takes no new sockets and stops the poller once the last
// one is removed: sockets still finishing their closing handshake after a
// shutdown keep being read until they end.
func (p *Poller) CloseWhenIdle() {
	p.mu.Lock()
	p.closed = true
	idle := p.live == 0
	p.mu.Unlock()
	if idle {
		p.stop()
	}
}

// stop ends the wait loop and releases the epoll instance.
func (p *Poller) stop() {
	p.stopOnce.Do(func() {
		_, _ = syscall.Write(p.wake[1], []byte{1})
		<-p.done
		p.closeFDs()
	})
}

// Done is closed once the poller has stopped and released its epoll
// instance.
func (p *Poller) Done() <-chan struct{} { return p.done }
