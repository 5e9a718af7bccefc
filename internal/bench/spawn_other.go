//go:build !linux

package bench

import (
	"errors"
	"os/exec"
	"syscall"
)

func childAttr() *syscall.SysProcAttr { return nil }

// startLowered starts cmd (at this process's priority: lowering one child
// is only done on Linux) and calls wait from a goroutine.
func startLowered(cmd *exec.Cmd, _ int, wait func()) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	go wait()
	return nil
}

func procNice(int) (int, error) { return 0, errors.New("nice value: only read on Linux") }
