package config

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Bounds of the history memory cap sized for the machine.
const (
	historyBytesFloor   = 64 << 20
	historyBytesCeiling = 4 << 30
	// historyBytesAssumed is the physical memory assumed where it cannot be
	// read (not Linux).
	historyBytesAssumed = 1 << 30
)

// HistoryBytes is the embedded engine's history memory cap: HistoryMaxBytes,
// or if that is 0 a quarter of the machine's physical memory, kept between
// 64 MiB and 4 GiB so that a small VM keeps a useful history and a big one
// does not hold gigabytes that a restart must snapshot.
func (c Config) HistoryBytes() int64 {
	if c.HistoryMaxBytes > 0 {
		return c.HistoryMaxBytes
	}
	return min(max(physicalMemory()/4, historyBytesFloor), historyBytesCeiling)
}

// LargeRequestSlots is how many large public requests are read and handled
// at once: MaxLargeRequests, or if that is 0 twice GOMAXPROCS, which keeps
// the cores busy with them while leaving the scheduler room for deliveries
// and health checks (measured: docs/security.md).
func (c Config) LargeRequestSlots() int {
	if c.MaxLargeRequests > 0 {
		return c.MaxLargeRequests
	}
	return 2 * runtime.GOMAXPROCS(0)
}

// LargeRequestTotalRate is how many large public requests a second all
// addresses together may send (LargeRequestRateAll): 0 sizes it for the
// machine at 100 a second per CPU, where one costs about a millisecond of
// CPU at most, so that large requests take at most about a tenth of the
// cores however many addresses send them (measured: docs/security.md);
// -1 (returned as 0) does not pace them.
func (c Config) LargeRequestTotalRate() int {
	switch {
	case c.LargeRequestRateAll < 0:
		return 0
	case c.LargeRequestRateAll == 0:
		return 100 * runtime.GOMAXPROCS(0)
	}
	return c.LargeRequestRateAll
}

// LargeRequestHandlers is how many of the admitted large public requests
// are handled at once once their body is read: one core fewer than the
// process has, at least one, so that large bodies never take every core
// (measured: docs/security.md).
func (c Config) LargeRequestHandlers() int {
	return max(runtime.GOMAXPROCS(0)-1, 1)
}

// physicalMemory reads MemTotal from /proc/meminfo.
func physicalMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return historyBytesAssumed
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil || kb <= 0 {
			break
		}
		return kb << 10
	}
	return historyBytesAssumed
}
