// Package buildinfo says which build a binary is: its version and the VCS
// commit it was built from, as `pushpull version` and `pushpull status`
// print them and a bug report needs them.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and commit are set by the linker, for builds that record no VCS
// information of their own (the container image: its build context has no
// .git):
//
//	go build -ldflags "-X github.com/pushpull/pushpull/internal/buildinfo.version=v1.2.0 \
//	    -X github.com/pushpull/pushpull/internal/buildinfo.commit=$(git rev-parse HEAD)"
//
// They are the only package variables the module has: the linker can set
// nothing else. When set, they win over what the Go toolchain recorded.
var (
	version string
	commit  string
)

// Info is one build's identity.
type Info struct {
	// Version is the module version ("v1.2.0", a pseudo-version, or
	// "(devel)" for a build from a work tree without a tag).
	Version string `json:"version"`
	// Commit is the full VCS revision; empty when the build recorded none.
	Commit string `json:"commit,omitempty"`
	// Modified says the work tree had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// Go is the toolchain that built the binary.
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// Read returns this binary's build information.
func Read() Info {
	return read(debug.ReadBuildInfo, version, commit)
}

func read(buildInfo func() (*debug.BuildInfo, bool), linkedVersion, linkedCommit string) Info {
	info := Info{Version: "(unknown)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := buildInfo(); ok {
		if bi.Main.Version != "" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if linkedVersion != "" {
		info.Version = linkedVersion
	}
	if linkedCommit != "" {
		info.Commit, info.Modified = linkedCommit, false
	}
	return info
}

// ShortCommit is the commit's first 12 characters, as people quote it.
func (i Info) ShortCommit() string {
	if len(i.Commit) > 12 {
		return i.Commit[:12]
	}
	return i.Commit
}

// String is the one line `pushpull version` prints:
// "pushpull v1.2.0 rev 0123456789ab go1.26.0 linux/amd64".
func (i Info) String() string {
	s := "pushpull " + i.Version
	if i.Commit != "" {
		s += " rev " + i.ShortCommit()
		if i.Modified {
			s += "+modified"
		}
	}
	return fmt.Sprintf("%s %s %s", s, i.Go, i.Platform)
}
