package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version prints the module version the binary was built from, with the VCS
// revision when the build recorded one: that is what a bug report needs.
func (r *runner) version(_ context.Context, args []string) int {
	if len(args) > 0 {
		if len(args) == 1 && isHelpFlag(args[0]) {
			fmt.Fprintln(r.stdout, "Usage: pushpull version\n\nPrints the version, the VCS revision and the Go toolchain of this binary.")
			return exitOK
		}
		return r.usageError("version", "takes no arguments")
	}
	fmt.Fprintln(r.stdout, versionString())
	return exitOK
}

func versionString() string {
	v := "(unknown)"
	var rev string
	var modified bool
	if bi, ok := debug.ReadBuildInfo(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	out := "pushpull " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " rev " + rev
		if modified {
			out += "+modified"
		}
	}
	return fmt.Sprintf("%s %s %s/%s", out, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
