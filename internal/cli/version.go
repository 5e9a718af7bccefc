package cli

import (
	"context"
	"fmt"

	"github.com/pushpull/pushpull/internal/buildinfo"
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
	fmt.Fprintln(r.stdout, buildinfo.Read())
	return exitOK
}
