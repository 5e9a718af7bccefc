//go:build !linux

package netpoll

import "syscall"

// Writev writes nothing here: every burst goes to a goroutine of its own,
// which writes it with a blocking write.
type Writev struct{}

// WriteNow returns pieces whole: the caller writes them itself.
func (w *Writev) WriteNow(_ syscall.RawConn, pieces [][]byte) ([][]byte, error) {
	return pieces, nil
}
