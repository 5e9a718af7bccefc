package deploy

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/config"
)

const unitFile = "pushpull.service"

// installOnce serialises the apt-get run of this test binary.
var installOnce sync.Once

// systemdAnalyze returns the path of systemd-analyze, installing Debian's
// systemd package when it is missing: the check is part of the suite, so a
// machine without it fails rather than skips.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("systemd-analyze"); err == nil {
		return p
	}
	installOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "sh", "-c",
			"(apt-get install -y systemd || (apt-get update && apt-get install -y systemd)) 2>&1").CombinedOutput()
		if err != nil {
			t.Fatalf("installing systemd with apt-get: %v\n%s", err, out)
		}
	})
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is still not on PATH after installing systemd: %v", err)
	}
	return p
}

// serviceKeys returns the [Service] section's settings, each key's values
// in order (a key such as SystemCallFilter may repeat).
func serviceKeys(t *testing.T, unit []byte) map[string][]string {
	t.Helper()
	keys := make(map[string][]string)
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: line %q is no key=value", unitFile, line)
			}
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}

// verify runs systemd-analyze verify on unit, installed under the unit's
// own name in a temporary directory, and returns what it printed: it exits
// 0 on unknown keys and unparsable values, which it only warns about, so
// any output at all is a finding.
func verify(t *testing.T, analyze string, unit []byte) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyze, "verify", path)
	// Plain text in the test's failure message.
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// withExec returns unit with ExecStart's program replaced by bin: verify
// refuses a program that does not exist, and the installed path does not
// here.
func withExec(t *testing.T, unit []byte, bin string) []byte {
	t.Helper()
	var out bytes.Buffer
	replaced := 0
	for _, line := range strings.SplitAfter(string(unit), "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			prog, args, _ := strings.Cut(rest, " ")
			if prog != "/usr/local/bin/pushpull" {
				t.Fatalf("ExecStart runs %q, want /usr/local/bin/pushpull as the install steps say", prog)
			}
			line = "ExecStart=" + bin + " " + args
			replaced++
		}
		out.WriteString(line)
	}
	if replaced != 1 {
		t.Fatalf("%s has %d ExecStart lines, want 1", unitFile, replaced)
	}
	return out.Bytes()
}

// buildPushpull builds the server binary the unit runs.
func buildPushpull(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pushpull")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../cmd/pushpull").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestUnitVerifies runs systemd-analyze verify on the unit with ExecStart
// at a freshly built pushpull, and first shows that the same check catches
// a broken directive, so that a quiet verify means something.
func TestUnitVerifies(t *testing.T) {
	analyze := systemdAnalyze(t)
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit = withExec(t, unit, buildPushpull(t))

	broken := bytes.Replace(unit, []byte("ProtectSystem=strict"), []byte("ProtectSystem=stricter"), 1)
	if out, err := verify(t, analyze, broken); err == nil && out == "" {
		t.Fatalf("systemd-analyze verify is silent on ProtectSystem=stricter: the check cannot see errors")
	}

	if out, err := verify(t, analyze, unit); err != nil || out != "" {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
}

// TestUnitMatchesServer checks what verify cannot: the flags ExecStart
// passes are ones serve accepts, the data dir is the StateDirectory, and
// systemd waits longer than the server's drain before it kills.
func TestUnitMatchesServer(t *testing.T) {
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	keys := serviceKeys(t, unit)

	if got := keys["StateDirectory"]; len(got) != 1 || got[0] != "pushpull" {
		t.Fatalf("StateDirectory = %q, want pushpull", got)
	}
	execStart := keys["ExecStart"]
	if len(execStart) != 1 {
		t.Fatalf("ExecStart = %q, want one", execStart)
	}
	fields := strings.Fields(execStart[0])
	if len(fields) < 2 || fields[1] != "serve" {
		t.Fatalf("ExecStart = %q, want pushpull serve ...", execStart[0])
	}
	// %S is the root of the state directories, /var/lib for system units.
	stateRoot := t.TempDir()
	args := make([]string, 0, len(fields)-2)
	for _, f := range fields[2:] {
		args = append(args, strings.ReplaceAll(f, "%S", stateRoot))
	}
	cfg, err := config.Load(args, func(string) string { return "" }, nil)
	if err != nil {
		t.Fatalf("serve refuses the unit's flags %q: %v", args, err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the unit's configuration is invalid: %v", err)
	}
	if want := filepath.Join(stateRoot, "pushpull"); cfg.DataDir != want {
		t.Errorf("--data-dir is %q, want the StateDirectory %q", cfg.DataDir, want)
	}

	stop := keys["TimeoutStopSec"]
	if len(stop) != 1 {
		t.Fatalf("TimeoutStopSec = %q, want one", stop)
	}
	d, err := time.ParseDuration(stop[0])
	if err != nil {
		t.Fatalf("TimeoutStopSec %q: %v", stop[0], err)
	}
	// The drain may take all of --shutdown-timeout; the snapshot comes after.
	if shutdown := config.Default().ShutdownTimeout; d <= shutdown {
		t.Errorf("TimeoutStopSec %s does not exceed --shutdown-timeout %s: the snapshot would be cut by SIGKILL", d, shutdown)
	}
	for k, want := range map[string]string{
		"KillSignal":      "SIGTERM",
		"Restart":         "on-failure",
		"EnvironmentFile": "-/etc/pushpull/pushpull.env",
		"LimitNOFILE":     "1048576",
		"User":            "pushpull",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
	} {
		if got := keys[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}
