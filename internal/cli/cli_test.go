package cli

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/server"
)

// syncBuffer is a bytes.Buffer safe for a command and a test watching it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testRunner is a runner with buffers for streams, the given environment,
// and a serve that fails the test if it is reached.
func testRunner(t *testing.T, env map[string]string) (*runner, *syncBuffer, *syncBuffer) {
	t.Helper()
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	r := &runner{
		stdin:    strings.NewReader(""),
		stdout:   stdout,
		stderr:   stderr,
		getenv:   func(k string) string { return env[k] },
		readFile: os.ReadFile,
		runServer: func(context.Context, config.Config, *slog.Logger) error {
			t.Error("the server was started")
			return nil
		},
		httpClient:   &http.Client{},
		minBackoff:   5 * time.Millisecond,
		maxBackoff:   20 * time.Millisecond,
		restartDelay: 30 * time.Millisecond,
	}
	return r, stdout, stderr
}

func TestUsageAndExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{
			name:       "no command",
			args:       nil,
			wantCode:   exitUsage,
			wantStderr: "Usage:\n  pushpull <command>",
		},
		{
			name:       "unknown command",
			args:       []string{"frobnicate"},
			wantCode:   exitUsage,
			wantStderr: "pushpull: unknown command \"frobnicate\"\n\npushpull is a push server",
		},
		{
			name:       "--help",
			args:       []string{"--help"},
			wantCode:   exitOK,
			wantStdout: "Commands:\n  serve",
		},
		{
			name:       "help",
			args:       []string{"help"},
			wantCode:   exitOK,
			wantStdout: "  subscribe  print the messages",
		},
		{
			name:       "help for a command",
			args:       []string{"help", "publish"},
			wantCode:   exitOK,
			wantStdout: "Usage: pushpull publish [flags] CHANNEL_ID... BODY|-",
		},
		{
			name:       "help for an unknown command",
			args:       []string{"help", "frobnicate"},
			wantCode:   exitUsage,
			wantStderr: "pushpull help: unknown command \"frobnicate\"",
		},
		{
			name:       "help with two commands",
			args:       []string{"help", "serve", "publish"},
			wantCode:   exitUsage,
			wantStderr: "pushpull help: want one command, got 2 arguments",
		},
		{
			name:       "serve --help",
			args:       []string{"serve", "--help"},
			wantCode:   exitOK,
			wantStdout: "  --signature-algo sha1|sha256\n        HMAC hash of channel signatures (env PUSHPULL_SIGNATURE_ALGO; default \"sha1\")",
		},
		{
			name:       "publish -h",
			args:       []string{"publish", "-h"},
			wantCode:   exitOK,
			wantStdout: "  --expiry SECONDS\n",
		},
		{
			name:       "subscribe --help",
			args:       []string{"subscribe", "--help"},
			wantCode:   exitOK,
			wantStdout: "  --long-poll\n        use long polling",
		},
		{
			name:       "version --help",
			args:       []string{"version", "--help"},
			wantCode:   exitOK,
			wantStdout: "Usage: pushpull version",
		},
		{
			name:       "version with an argument",
			args:       []string{"version", "x"},
			wantCode:   exitUsage,
			wantStderr: "pushpull version: takes no arguments",
		},
		{
			name:       "unknown flag of a command",
			args:       []string{"publish", "--nope"},
			wantCode:   exitUsage,
			wantStderr: "pushpull publish: unknown flag --nope\nRun \"pushpull publish --help\" for usage.\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, stdout, stderr := testRunner(t, nil)
			code := r.main(t.Context(), tt.args)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstderr: %s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantStdout, stdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, stderr)
			}
			if tt.wantStdout == "" && stdout.String() != "" {
				t.Errorf("stdout not empty:\n%s", stdout)
			}
			if tt.wantStderr == "" && stderr.String() != "" {
				t.Errorf("stderr not empty:\n%s", stderr)
			}
		})
	}
}

func TestEveryCommandHasHelpWithExamples(t *testing.T) {
	for _, c := range commands() {
		if c.name == "help" || c.name == "version" {
			continue
		}
		r, stdout, _ := testRunner(t, nil)
		if code := r.main(t.Context(), []string{c.name, "--help"}); code != exitOK {
			t.Errorf("%s --help: exit %d", c.name, code)
		}
		if !strings.Contains(stdout.String(), "Examples:\n  pushpull "+c.name) {
			t.Errorf("%s --help has no examples:\n%s", c.name, stdout)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r, stdout, _ := testRunner(t, nil)
		if code := r.main(t.Context(), args); code != exitOK {
			t.Errorf("%v: exit %d", args, code)
		}
		if out := stdout.String(); !strings.HasPrefix(out, "pushpull ") || !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Errorf("%v printed %q, want one line starting with \"pushpull \"", args, out)
		}
	}
}

func TestServeBadConfig(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.json")
	if err := os.WriteFile(unknown, []byte(`{"adress": ":1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{
			name: "invalid flag value",
			args: []string{"--signature-algo", "md5"},
			want: `pushpull serve: invalid --signature-algo "md5": want sha1 or sha256`,
		},
		{
			name: "invalid environment value",
			env:  map[string]string{"PUSHPULL_POLL_TIMEOUT": "soon"},
			want: `pushpull serve: invalid PUSHPULL_POLL_TIMEOUT "soon": want a duration like "40s" or "1m30s", or whole seconds`,
		},
		{
			name: "environment value caught by validation",
			env:  map[string]string{"PUSHPULL_ADDR": "8080"},
			want: `pushpull serve: invalid --addr "8080": want HOST:PORT, like ":8080" or "127.0.0.1:8080"`,
		},
		{
			name: "unknown key in the config file",
			args: []string{"--config", unknown},
			want: `pushpull serve: config file ` + unknown + `: unknown setting "adress"`,
		},
		{
			name: "missing config file",
			args: []string{"--config", filepath.Join(dir, "none.json")},
			want: `pushpull serve: invalid --config: open ` + filepath.Join(dir, "none.json") + `: no such file or directory`,
		},
		{
			name: "unknown flag",
			args: []string{"--adress", ":1"},
			want: `pushpull serve: unknown flag --adress`,
		},
		{
			name: "argument",
			args: []string{"now"},
			want: `pushpull serve: unexpected argument "now": serve takes only flags`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, stdout, stderr := testRunner(t, tt.env)
			code := r.main(t.Context(), append([]string{"serve"}, tt.args...))
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			want := tt.want + "\nRun \"pushpull serve --help\" for usage.\n"
			if got := stderr.String(); got != want {
				t.Errorf("stderr\n got %q\nwant %q", got, want)
			}
			if stdout.String() != "" {
				t.Errorf("stdout: %q", stdout)
			}
		})
	}
}

func TestServeRunsServer(t *testing.T) {
	r, _, stderr := testRunner(t, map[string]string{"PUSHPULL_DATA_DIR": "/tmp/pp"})
	var got config.Config
	r.runServer = func(ctx context.Context, cfg config.Config, log *slog.Logger) error {
		got = cfg
		if !log.Enabled(ctx, slog.LevelDebug) {
			t.Error("the logger does not log at the configured debug level")
		}
		log.Debug("hello", "k", "v")
		return nil
	}
	code := r.main(t.Context(), []string{"serve", "--addr", "127.0.0.1:0", "--log-level", "debug"})
	if code != exitOK {
		t.Fatalf("exit code %d; stderr: %s", code, stderr)
	}
	want := config.Default()
	want.Addr, want.DataDir, want.LogLevel = "127.0.0.1:0", "/tmp/pp", "debug"
	if got.Addr != want.Addr || got.DataDir != want.DataDir || got.LogLevel != want.LogLevel {
		t.Errorf("server got %+v, want %+v", got, want)
	}
	if !strings.Contains(stderr.String(), "level=DEBUG msg=hello k=v") {
		t.Errorf("log is not slog text on stderr: %q", stderr)
	}
}

func TestServeFailure(t *testing.T) {
	r, _, stderr := testRunner(t, nil)
	r.runServer = func(context.Context, config.Config, *slog.Logger) error {
		return errors.New("listen on :8080: address already in use")
	}
	if code := r.main(t.Context(), []string{"serve"}); code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	if stderr.String() != "pushpull serve: listen on :8080: address already in use\n" {
		t.Errorf("stderr: %q", stderr)
	}
}

// TestServePortInUse runs the real server on a port that is taken: the
// error is the one line every command prints, with exitFailure.
func TestServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r, stdout, stderr := testRunner(t, nil)
	r.runServer = server.Run
	addr := ln.Addr().String()
	code := r.main(t.Context(), []string{"serve", "--addr", addr, "--internal-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-level", "error"})
	if code != exitFailure {
		t.Errorf("exit code %d, want %d", code, exitFailure)
	}
	want := "pushpull serve: listen on " + addr + " (--addr): listen tcp " + addr + ": bind: address already in use\n"
	if stderr.String() != want || stdout.String() != "" {
		t.Errorf("stderr %q, want %q; stdout %q", stderr, want, stdout)
	}
}

// TestMainWiring checks Main's own streams and environment reach the
// commands; version is the one command that touches nothing else.
func TestMainWiring(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main(t.Context(), []string{"version"}, &stdout, &stderr, func(string) string { return "" }); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "pushpull ") {
		t.Errorf("stdout %q", stdout.String())
	}
	stdout.Reset()
	code := Main(t.Context(), []string{"serve"}, &stdout, &stderr, func(k string) string {
		if k == "PUSHPULL_LOG_LEVEL" {
			return "loud"
		}
		return ""
	})
	if code != exitUsage || !strings.Contains(stderr.String(), `invalid --log-level "loud"`) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
