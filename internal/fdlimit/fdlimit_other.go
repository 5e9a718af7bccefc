//go:build !unix

package fdlimit

// Raise does nothing here.
func Raise() (Limit, error) { return Limit{}, ErrUnsupported }

// Current is unknown here.
func Current() (uint64, error) { return 0, ErrUnsupported }
