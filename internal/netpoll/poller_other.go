//go:build !linux

package netpoll

import (
	"errors"
	"log/slog"
	"syscall"
)

// Poller is the epoll socket watcher; there is none outside Linux, where
// every WebSocket keeps its reader goroutine.
type Poller struct{}

// New reports that there is no poller here.
func New(*slog.Logger) (*Poller, error) { return nil, errors.ErrUnsupported }

// Handler is run when its socket is readable.
type Handler interface{ Readable() }

// Reserve, Watch, Rearm, Remove and CloseWhenIdle are never reached: New
// returns no poller.
func (p *Poller) Reserve(Handler) (uint32, error) { return 0, errors.ErrUnsupported }

func (p *Poller) Watch(syscall.RawConn, uint32) error { return errors.ErrUnsupported }

func (p *Poller) Rearm(syscall.RawConn, uint32) error { return errors.ErrUnsupported }

func (p *Poller) Remove(uint32) {}

func (p *Poller) CloseWhenIdle() {}

// Done is never closed: there is no poller to stop.
func (p *Poller) Done() <-chan struct{} { return nil }
