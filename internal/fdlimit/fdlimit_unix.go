//go:build unix

package fdlimit

import (
	"fmt"
	"syscall"
)

// Raise lifts the soft open-file limit to the hard one. Children started
// afterwards inherit it.
func Raise() (Limit, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return Limit{}, fmt.Errorf("read the open-file limit: %w", err)
	}
	l := Limit{Before: uint64(lim.Cur), After: uint64(lim.Cur)}
	if lim.Cur >= lim.Max {
		return l, nil
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return l, fmt.Errorf("raise the open-file limit from %d to %d: %w", l.Before, lim.Max, err)
	}
	// Read it back: some systems (macOS) accept more than they apply.
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return l, fmt.Errorf("read the open-file limit: %w", err)
	}
	l.After = uint64(lim.Cur)
	return l, nil
}

// Current returns the soft open-file limit.
func Current() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	return uint64(lim.Cur), nil
}
