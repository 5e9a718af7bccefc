package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
)

// childAttr makes the kernel stop the server if the bench dies without
// stopping it (killed, or a crash): a forgotten server would hold its port
// and memory.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// startLowered starts cmd with nice added to its priority, then calls wait
// (which waits for it) on the thread that started it.
//
// Linux keeps the nice value per thread and a child inherits the value of
// the thread that forks it. So the start happens on a thread of its own,
// lowered first; that thread is never handed back to the runtime (the
// goroutine ends locked to it, which ends the thread), as an unprivileged
// process cannot raise it again. It lives until the child exits, which
// also keeps the child's parent-death signal (childAttr) armed: it follows
// the thread, not the process. (Should the goroutine run on the main
// thread, the runtime parks that thread for good instead of ending it:
// lowered, it runs nothing else either.)
func startLowered(cmd *exec.Cmd, nice int, wait func()) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if nice != 0 {
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice+currentNice()); err != nil {
				started <- fmt.Errorf("lower the priority by %d: %w", nice, err)
				return
			}
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		wait()
	}()
	return <-started
}

// currentNice is this thread's nice value; 0 if unknown.
func currentNice() int {
	n, err := procNice(syscall.Gettid())
	if err != nil {
		return 0
	}
	return n
}

// procNice reads the nice value of task id (field 19 of /proc/ID/stat).
func procNice(id int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(id) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read nice value: %w", err)
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	fields := bytes.Fields(data[i+1:])
	// fields[0] is field 3 (state), so nice (19) is fields[16].
	if len(fields) < 17 {
		return 0, errors.New("malformed /proc stat: too few fields")
	}
	return strconv.Atoi(string(fields[16]))
}
