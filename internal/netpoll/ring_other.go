//go:build !linux

package netpoll

import "errors"

// Ring is io_uring, which only Linux has: NewRing always fails, and the
// caller writes with Writev.
type Ring struct{}

// RingWrite is one socket's write in a batch (see the Linux version).
type RingWrite struct {
	FD     int
	Pieces [][]byte
	N      int
	Err    error
}

// NewRing reports that there is no io_uring here.
func NewRing(uint32) (*Ring, error) { return nil, errors.ErrUnsupported }

// Writev, Enters and Close are never reached: NewRing returns no ring.
func (r *Ring) Writev([]RingWrite) error { return errors.ErrUnsupported }

func (r *Ring) Enters() int { return 0 }

func (r *Ring) Close() {}
