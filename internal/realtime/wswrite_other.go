//go:build !linux

package realtime

import "syscall"

// iovScratch is unused here.
type iovScratch struct{}

// writeNow writes nothing here: every burst goes to a goroutine of its own.
func (w *burstWriter) writeNow(_ syscall.RawConn, pieces [][]byte) ([][]byte, error) {
	return pieces, nil
}
