// Package fdlimit raises the process's open-file limit. Every connection a
// push server holds is a file descriptor, and the usual soft limit (1,024)
// is far below what the hard limit allows.
package fdlimit

import "errors"

// ErrUnsupported is returned where the system has no open-file limit to
// raise (Windows handles have no such per-process soft limit).
var ErrUnsupported = errors.New("no open-file limit on this system")

// Limit is the soft open-file limit before and after Raise.
type Limit struct {
	Before uint64
	After  uint64
}

// Raised reports whether Raise changed the limit.
func (l Limit) Raised() bool { return l.After > l.Before }
