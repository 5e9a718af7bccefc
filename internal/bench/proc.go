package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/pushpull/pushpull/internal/fdlimit"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. Go
// cannot call sysconf(_SC_CLK_TCK) without cgo, but the kernel fixes USER_HZ
// at 100 on x86_64 and arm64 whatever its internal HZ, so this is exact
// there; the 10 ms resolution is fine over a phase of seconds.
const clockTicks = 100

// procRSS returns the resident set size of process pid and its peak (VmHWM),
// in bytes, from /proc/PID/status.
func procRSS(pid int) (rss, peak int64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("read server memory: %w", err)
	}
	rss, err = statusKiB(data, "VmRSS:")
	if err != nil {
		return 0, 0, err
	}
	peak, err = statusKiB(data, "VmHWM:")
	if err != nil {
		return 0, 0, err
	}
	return rss, peak, nil
}

// statusKiB reads a "Name:   1234 kB" line of /proc/PID/status, in bytes.
func statusKiB(data []byte, name string) (int64, error) {
	i := bytes.Index(data, []byte("\n"+name))
	if i < 0 {
		return 0, fmt.Errorf("no %s in /proc status", name)
	}
	line := data[i+1+len(name):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	num, unit, _ := bytes.Cut(bytes.TrimSpace(line), []byte(" "))
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || string(unit) != "kB" {
		return 0, fmt.Errorf("malformed %s line %q in /proc status", name, line)
	}
	return n << 10, nil
}

// procCPU returns the user plus system CPU time process pid has used, from
// /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read server CPU time: %w", err)
	}
	return parseStatCPU(data)
}

// parseStatCPU reads utime and stime, fields 14 and 15 of /proc/PID/stat.
// The command name (field 2, in parentheses) may hold spaces, so fields are
// counted from the last ')'.
func parseStatCPU(data []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state), so utime (14) is fields[11].
	if len(fields) < 13 {
		return 0, errors.New("malformed /proc stat: too few fields")
	}
	utime, err1 := strconv.ParseInt(string(fields[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(fields[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat: utime or stime")
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// selfCPU returns the user plus system CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// RaiseFileLimit lifts this process's soft open-file limit to the hard one
// (each connection is a file descriptor) and returns the limit now in force.
// Children started afterwards inherit it.
func RaiseFileLimit() (uint64, error) {
	l, err := fdlimit.Raise()
	return l.After, err
}

// fileLimit returns the soft open-file limit.
func fileLimit() (uint64, error) { return fdlimit.Current() }

// machineCPU is the whole machine's CPU time from the first line of
// /proc/stat. The kernel here accounts by ticks (no IRQ_TIME_ACCOUNTING),
// so softirq time that ran in a process's context, as loopback TCP's
// receive path does, is counted both in that process's stime and in the
// softirq column: busy is user+nice+system plus interrupts, not a sum of
// processes.
type machineCPU struct {
	busy  time.Duration
	steal time.Duration
}

func readMachineCPU() (machineCPU, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, fmt.Errorf("read machine CPU time: %w", err)
	}
	return parseMachineCPU(data)
}

// parseMachineCPU reads "cpu user nice system idle iowait irq softirq steal …";
// guest and guest_nice are already counted in user and nice.
func parseMachineCPU(data []byte) (machineCPU, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 9 || string(fields[0]) != "cpu" {
		return machineCPU{}, errors.New("malformed /proc/stat")
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(string(fields[i+1]), 10, 64)
		if err != nil {
			return machineCPU{}, errors.New("malformed /proc/stat")
		}
		v[i] = n
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTicks }
	return machineCPU{busy: tick(v[0] + v[1] + v[2] + v[5] + v[6]), steal: tick(v[7])}, nil
}

// otherProcsCPU returns the CPU time of every process but the excluded
// ones, with the time of the children they have waited for, so that short
// commands (compilers under "go test") are counted through their parent.
func otherProcsCPU(exclude ...int) map[int]time.Duration {
	out := make(map[int]time.Duration)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
next:
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		for _, x := range exclude {
			if pid == x {
				continue next
			}
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone, or not ours to read
		}
		if d, err := parseStatCPUWithChildren(data); err == nil {
			out[pid] = d
		}
	}
	return out
}

// parseStatCPUWithChildren reads utime, stime, cutime and cstime (fields
// 14 to 17) of /proc/PID/stat.
func parseStatCPUWithChildren(data []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 15 {
		return 0, errors.New("malformed /proc stat: too few fields")
	}
	var sum int64
	for _, f := range fields[11:15] {
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return 0, errors.New("malformed /proc stat: CPU times")
		}
		sum += n
	}
	return time.Duration(sum) * time.Second / clockTicks, nil
}

// otherProcsDelta is how much CPU the processes of after used since before;
// a process that appeared in between counts whole.
func otherProcsDelta(before, after map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range after {
		d += max(t-before[pid], 0)
	}
	return d
}
