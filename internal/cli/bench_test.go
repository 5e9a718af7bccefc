package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/bench"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/server"
)

func TestBenchUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--spawn", "--url", "http://127.0.0.1:1"}, "--url and --internal-url exclude --spawn"},
		{[]string{"--server-arg", "--send-queue=1", "--signature-key", "k"}, "--server-arg needs --spawn"},
		{[]string{}, "--signature-key is needed"},
		{[]string{"--spawn", "--subscribers", "0"}, "invalid --subscribers 0"},
		{[]string{"--spawn", "--transport", "sse"}, `invalid --transport "sse"`},
		{[]string{"--spawn", "--mode", "all"}, `invalid --mode "all"`},
		{[]string{"--spawn", "--rate", "0"}, "invalid --rate 0"},
		{[]string{"--spawn", "--duration", "0s"}, "invalid --duration 0s"},
		{[]string{"--spawn", "--publishers", "0"}, "invalid --publishers 0"},
		{[]string{"--spawn", "--signature-algo", "md5"}, `invalid --signature-algo "md5"`},
		{[]string{"--spawn", "extra"}, `unexpected argument "extra"`},
		{[]string{"--subscribers", "many"}, `invalid --subscribers "many"`},
	} {
		r, stdout, stderr := testRunner(t, nil)
		if code := r.main(t.Context(), append([]string{"bench"}, tt.args...)); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", tt.args, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "pushpull bench --help") {
			t.Errorf("%v: stderr %q, want %q", tt.args, stderr, tt.want)
		}
		if stdout.String() != "" {
			t.Errorf("%v: stdout %q", tt.args, stdout)
		}
	}
}

// benchServer runs a server in the default layout and returns the base URLs
// of its public and its trusted listener.
func benchServer(t *testing.T, key string) (url, internal string) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = key
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	iln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		ln.Close()
		iln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListeners(ctx, ln, iln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
	return "http://" + ln.Addr().String(), "http://" + iln.Addr().String()
}

func TestBenchAgainstURL(t *testing.T) {
	url, internal := benchServer(t, "cli-bench-key")
	args := []string{"bench", "--url", url, "--internal-url", internal, "--signature-key", "cli-bench-key", "--subscribers", "5",
		"--rate", "20", "--duration", "500ms", "--settle", "0s", "--drain", "30s"}

	r, stdout, stderr := testRunner(t, nil)
	if code := r.main(t.Context(), append(args, "--json")); code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	var res bench.Result
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("--json printed %q: %v", stdout, err)
	}
	if d := res.Deliveries; d.Expected != 5*res.Publish.Sent || d.Received != d.Expected || res.Latency.Count != uint64(d.Received) || d.Received == 0 {
		t.Errorf("result: %+v", res.Deliveries)
	}
	if !strings.Contains(stderr.String(), "bench: connecting 5 ws subscribers") {
		t.Errorf("no progress on stderr: %q", stderr)
	}

	r, stdout, stderr = testRunner(t, nil)
	if code := r.main(t.Context(), append(args, "--mode", "private", "--transport", "lp")); code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	out := stdout.String()
	for _, want := range []string{
		"pushpull bench: long polling private, 5 subscribers, 20 publishes/s for 0.5s, 100-byte bodies, 1 publisher(s)\n",
		"\nconnections   5 established, 0 failed",
		"\nserver RSS    ",
		"KiB per connection",
		"\nlatency       p50 ",
		"\nserver CPU    ",
		"\nbench CPU     ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`\ndeliveries    (\d+) expected, (\d+) received, 0 lost, 0 duplicated\n`).FindStringSubmatch(out); m == nil || m[1] != m[2] {
		t.Errorf("output lacks the deliveries line, all received:\n%s", out)
	}
}

func TestBenchTooManySubscribers(t *testing.T) {
	r, _, stderr := testRunner(t, nil)
	// Refused before a server is spawned: the test binary is no pushpull.
	if code := r.main(t.Context(), []string{"bench", "--spawn", "--subscribers", "100000000", "--rate", "1"}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr.String(), "100000000 subscribers need about") || strings.Contains(stderr.String(), "spawned") {
		t.Errorf("stderr %q", stderr)
	}
}

func TestBenchUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	r, stdout, stderr := testRunner(t, nil)
	if code := r.main(t.Context(), []string{"bench", "--url", url, "--internal-url", "same", "--signature-key", "k"}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr.String(), "pushpull bench: reach the server") || stdout.String() != "" {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
}
