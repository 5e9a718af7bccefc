package redis

import (
	"fmt"
	"strconv"
	"time"

	"github.com/pushpull/pushpull/internal/store"
)

// --- encoding ---

// roundTrip returns t as a later read will: returned records then compare
// equal with stored ones field by field (no monotonic reading, UTC).
func roundTrip(t time.Time) time.Time { return store.DecodeTime(store.EncodeTime(t)) }

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// fields reads a record hash, keeping the first malformed or missing field
// as err so that callers check once.
type fields struct {
	m   map[string]string
	err error
}

func (f *fields) str(name string) string {
	v, ok := f.m[name]
	if !ok && f.err == nil {
		f.err = fmt.Errorf("corrupt record: field %s missing", name)
	}
	return v
}

func (f *fields) int(name string) int64 {
	v := f.str(name)
	if f.err != nil {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		f.err = fmt.Errorf("corrupt record: field %s: %w", name, err)
	}
	return n
}

func (f *fields) time(name string) time.Time { return store.DecodeTime(f.int(name)) }

func (f *fields) bool(name string) bool { return f.int(name) != 0 }
