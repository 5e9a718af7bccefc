package buildinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestReadPrefersTheLinkersValues(t *testing.T) {
	recorded := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	got := read(recorded, "", "")
	if got.Version != "(devel)" || got.Commit != "0123456789abcdef0123456789abcdef01234567" || !got.Modified {
		t.Errorf("from the toolchain: %+v", got)
	}
	if s := got.String(); !strings.HasPrefix(s, "pushpull (devel) rev 0123456789ab+modified go") {
		t.Errorf("String() = %q", s)
	}
	got = read(recorded, "v1.2.0", "fedcba9876543210fedcba9876543210fedcba98")
	if got.Version != "v1.2.0" || got.Commit != "fedcba9876543210fedcba9876543210fedcba98" || got.Modified {
		t.Errorf("with -ldflags -X: %+v", got)
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	if got := read(none, "", ""); got.Version != "(unknown)" || got.Commit != "" || strings.Contains(got.String(), " rev ") {
		t.Errorf("without build information: %+v %q", got, got.String())
	}
}

// buildPushpull builds ./cmd/pushpull with args into a temporary directory
// and returns what its `version` prints, and the repository root.
func buildPushpull(t *testing.T, args ...string) (printed, root string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "pushpull")
	cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, args...), "./cmd/pushpull")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("pushpull version: %v", err)
	}
	return strings.TrimSpace(string(out)), root
}

// TestBinaryVersionFromLinker builds as the Dockerfile does: no VCS
// information (-buildvcs=false), the version and commit given with
// -ldflags -X.
func TestBinaryVersionFromLinker(t *testing.T) {
	const pkg = "github.com/pushpull/pushpull/internal/buildinfo"
	got, _ := buildPushpull(t, "-buildvcs=false", "-ldflags",
		"-X "+pkg+".version=v9.8.7 -X "+pkg+".commit=abcdef0123456789abcdef0123456789abcdef01")
	if !strings.HasPrefix(got, "pushpull v9.8.7 rev abcdef012345 go") {
		t.Errorf("with -ldflags -X: %q", got)
	}
}

// TestBinaryVersionFromVCS builds as a developer does in a git checkout:
// the toolchain records the commit, and version prints it.
func TestBinaryVersionFromVCS(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The toolchain stamps the revision only where .git is a directory: a
	// git worktree's .git is a file, and its builds record no revision.
	if fi, err := os.Stat(filepath.Join(root, ".git")); err != nil || !fi.IsDir() {
		t.Skipf("%s/.git is not a directory (a worktree?): the toolchain records no revision here", root)
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("git rev-parse HEAD: %v", err)
	}
	// Explicit: GOFLAGS may say -buildvcs=false (it does on CI machines
	// that build without git); a developer's default, auto, stamps.
	got, _ := buildPushpull(t, "-buildvcs=true")
	if want := "rev " + strings.TrimSpace(string(head))[:12]; !strings.Contains(got, want) {
		t.Errorf("built in the work tree: %q, want it to name %q", got, want)
	}
}
