//go:build !linux

package realtime

import (
	"errors"
	"log/slog"
	"syscall"
)

// poller is the epoll reader's socket watcher; there is none outside Linux,
// where every WebSocket keeps its reader goroutine.
type poller struct{}

func newPoller(*slog.Logger) (*poller, error) { return nil, errors.ErrUnsupported }

// pollHandler is run when its socket is readable.
type pollHandler interface{ readable() }

func (p *poller) reserve(pollHandler) (uint32, error) { return 0, errors.ErrUnsupported }

func (p *poller) watch(syscall.RawConn, uint32) error { return errors.ErrUnsupported }

func (p *poller) rearm(syscall.RawConn, uint32) error { return errors.ErrUnsupported }

func (p *poller) remove(uint32) {}

func (p *poller) closeWhenIdle() {}
