package bench

import "syscall"

// childAttr makes the kernel stop the server if the bench dies without
// stopping it (killed, or a crash): a forgotten server would hold its port
// and memory.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
