//go:build unix

package fdlimit

import (
	"runtime"
	"syscall"
	"testing"
)

// lowerSoftLimit puts the soft limit below the hard one and restores the
// original at the end. The Go runtime already lifts the soft limit at
// start-up, so without this a Raise that does nothing would pass.
func lowerSoftLimit(t *testing.T) (low, hard uint64) {
	t.Helper()
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.Max < 2 {
		t.Fatalf("hard open-file limit %d leaves no room to lower the soft one", orig.Max)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore the open-file limit: %v", err)
		}
	})
	lowered := orig
	// Below the hard limit, and above what the test binary already has open.
	lowered.Cur = min(orig.Max/2, 512)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatalf("lower the soft open-file limit to %d: %v", lowered.Cur, err)
	}
	return uint64(lowered.Cur), uint64(orig.Max)
}

func TestRaiseReachesTheHardLimit(t *testing.T) {
	low, hard := lowerSoftLimit(t)
	l, err := Raise()
	if err != nil {
		t.Fatal(err)
	}
	if l.Before != low {
		t.Fatalf("Raise saw soft limit %d before, want the lowered %d", l.Before, low)
	}
	if !l.Raised() {
		t.Fatalf("Raise left the soft limit at %d (hard %d): %+v", l.Before, hard, l)
	}
	// macOS caps an unlimited hard limit at OPEN_MAX, so only Linux is
	// held to the exact hard value.
	if runtime.GOOS == "linux" && l.After != hard {
		t.Fatalf("Raise reached %d, want the hard limit %d", l.After, hard)
	}
	cur, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	if cur != l.After {
		t.Fatalf("Current() = %d, Raise said %d", cur, l.After)
	}
	again, err := Raise()
	if err != nil {
		t.Fatal(err)
	}
	if again.Raised() {
		t.Fatalf("second Raise changed the limit again: %+v", again)
	}
	if again.Before != l.After || again.After != l.After {
		t.Fatalf("second Raise = %+v, want the limit to stay at %d", again, l.After)
	}
}
