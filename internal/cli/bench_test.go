package cli

import (
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/bench"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/testkit"
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
		{[]string{"--spawn", "--internal-url", "http://127.0.0.1:1"}, "--url and --internal-url exclude --spawn"},
		{[]string{"--spawn", "--soak", "--idle"}, "--soak excludes --idle, --storm and --attack"},
		{[]string{"--spawn", "--soak", "--attack", "all"}, "--soak excludes --idle, --storm and --attack"},
		{[]string{"--spawn", "--attack", "all", "--storm"}, "--attack excludes --idle and --storm"},
		{[]string{"--spawn", "--attack", "nope"}, `invalid --attack: unknown attack "nope"`},
		{[]string{"--spawn", "--soak", "--sample-every", "0s"}, "--sample-every and --max-drift want values above 0"},
		{[]string{"--spawn", "--attack", "slow", "--attack-slow-clients", "0"}, "the --attack-… counts"},
		{[]string{"--spawn", "--attack", "slow", "--attack-nice", "20"}, "invalid --attack-nice 20: want 0 to 19"},
		{[]string{"--floor", "--signature-key", "k"}, "--floor needs --spawn"},
		{[]string{"--spawn", "--floor-uring"}, "--floor-uring needs --floor"},
		{[]string{"--spawn", "--floor", "--server-arg", "--send-queue=1"}, "--floor needs --spawn and takes no --server-arg"},
		{[]string{"--spawn", "--floor", "--transport", "lp"}, "--floor serves WebSocket text subscribers only"},
		{[]string{"--spawn", "--floor", "--binary"}, "--floor serves WebSocket text subscribers only"},
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
	cfg := testkit.Config(t)
	cfg.SignatureKey = key
	s, err := server.New(cfg, testkit.Logger())
	if err != nil {
		t.Fatal(err)
	}
	srv := testkit.Serve(t, s, true)
	return srv.URL, srv.Internal
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

func TestBenchSoak(t *testing.T) {
	url, internal := benchServer(t, "cli-bench-key")
	r, stdout, stderr := testRunner(t, nil)
	args := []string{"bench", "--url", url, "--internal-url", internal, "--signature-key", "cli-bench-key", "--subscribers", "5", "--soak",
		"--rate", "10", "--duration", "1s", "--sample-every", "200ms", "--warmup", "200ms", "--settle", "0s", "--drain", "30s"}
	if code := r.main(t.Context(), args); code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	out := stdout.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`\nsoak          \d+ samples every 0.2 s; the first 0.2 s are warm-up\n`),
		regexp.MustCompile(`\n              rss        [\d.]+ MiB after warm-up → [\d.]+ MiB at the end \([+-][\d.]+ %\), max [\d.]+ MiB\n`),
		regexp.MustCompile(`\n              fds        \d+ after warm-up → \d+ at the end`),
		regexp.MustCompile(`\n              threads    \d+ after warm-up`),
		regexp.MustCompile(`\n(NOT HELD|HELD    ) fds drift: [+-][\d.]+ % \(want ≤ \+5.0 % or \+8\)\n`),
		regexp.MustCompile(`\nHELD     deliveries lost or duplicated: 0 lost, 0 duplicated of \d+ \(want 0\)\n`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr.String(), "bench: soak    0s: ") {
		t.Errorf("no samples on stderr: %q", stderr)
	}
}

func TestWriteAttackResult(t *testing.T) {
	res := &bench.AttackResult{
		Quiet:        &bench.Result{Transport: "ws", Mode: "fanout", Subscribers: 10, Latency: bench.Latency{P99: 10}},
		Attacked:     &bench.Result{Transport: "ws", Mode: "fanout", Subscribers: 10, Latency: bench.Latency{P99: 40}},
		QuietHealth:  bench.HealthResult{Samples: 100, P50: 1, P99: 2, Max: 3},
		AttackHealth: bench.HealthResult{Samples: 90, Failed: 2, P50: 5, P99: 900, Max: 2000},
		RSSIdle:      10 << 20,
		RSSPeak:      1034 << 20,
		Stopped:      "the server's RSS reached 4100 MiB, over the 4096 MiB limit",
		Attackers: []bench.AttackKindResult{
			{Kind: bench.AttackCollide, Clients: 2, Requests: 3, Outcomes: []bench.ErrorCount{{Error: "HTTP 401", Count: 3}}},
			{Kind: bench.AttackSlow, Clients: 300, Requests: 310, Cut: 10},
		},
		Checks: []bench.Check{
			{Name: "subscribers' p99 latency", Want: "≤ 2× quiet (10.00 ms)", Got: "40.00 ms (4.00×)"},
			{Name: "deliveries lost or duplicated", Want: "0", Got: "0 lost", Held: true},
		},
	}
	var b strings.Builder
	writeAttackResult(&b, res, true)
	out := b.String()
	for _, want := range []string{
		"== quiet run ==\n",
		"\n/healthz      100 asked, 0 failed; p50 1.0 ms, p99 2.0 ms, max 3.0 ms\n",
		"\n== under attack ==\n",
		"\n/healthz      90 asked, 2 failed; p50 5.0 ms, p99 900.0 ms, max 2000.0 ms\n",
		"\ncollide       2 clients, 3 requests\n              3× HTTP 401\n",
		"\nslow          300 clients, 310 requests (connections), 10 cut by the server\n",
		"\n              stopped early: the server's RSS reached 4100 MiB, over the 4096 MiB limit\n",
		"\nserver RSS    idle 10.0 MiB, peak under attack 1034.0 MiB (+1024.0 MiB)\n",
		"\nNOT HELD subscribers' p99 latency: 40.00 ms (4.00×) (want ≤ 2× quiet (10.00 ms))\n",
		"\nHELD     deliveries lost or duplicated: 0 lost (want 0)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchAttackJSON(t *testing.T) {
	url, internal := benchServer(t, "cli-bench-key")
	r, stdout, stderr := testRunner(t, nil)
	args := []string{"bench", "--url", url, "--internal-url", internal, "--signature-key", "cli-bench-key", "--subscribers", "3",
		"--rate", "10", "--duration", "500ms", "--settle", "0s", "--drain", "30s",
		"--attack", "slow,collide", "--attack-slow-clients", "2", "--attack-workers", "1", "--attack-body", "2048",
		"--attack-slow-every", "50ms", "--json",
		// The attack process would be this test binary.
		"--attack-in-process"}
	if code := r.main(t.Context(), args); code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	var res bench.AttackResult
	if err := json.Unmarshal([]byte(stdout.String()), &res); err != nil {
		t.Fatalf("--json printed %q: %v", stdout, err)
	}
	if res.Quiet == nil || res.Attacked == nil || res.Quiet.Deliveries.Received == 0 || res.Attacked.Deliveries.Lost != 0 {
		t.Fatalf("runs: %+v / %+v", res.Quiet, res.Attacked)
	}
	if len(res.Attackers) != 2 || res.Attackers[0].Kind != bench.AttackCollide || res.Attackers[0].Clients != 1 ||
		res.Attackers[1].Kind != bench.AttackSlow || res.Attackers[1].Clients != 2 {
		t.Errorf("attackers %+v", res.Attackers)
	}
	if res.Config.BodySize != 2048 || res.Config.SlowEvery != 0.05 || res.Config.MaxRSS != bench.DefaultAttackMaxRSS {
		t.Errorf("config %+v", res.Config)
	}
	for _, want := range []string{"bench: quiet run first…", "bench: run under attack (collide, slow)…"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q: %s", want, stderr)
		}
	}
}

func TestBenchAttackOnly(t *testing.T) {
	url, _ := benchServer(t, "cli-bench-key")
	addr := strings.TrimPrefix(url, "http://")
	r, stdout, stderr := testRunner(t, nil)
	r.stdin = strings.NewReader(`{"host":"` + addr + `","addr":"` + addr + `","config":{"Kinds":["collide"],"Workers":1,"BodySize":2048}}` + "\n")
	if code := r.main(t.Context(), []string{"bench", "--attack-only"}); code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res []bench.AttackKindResult
	if len(lines) != 2 || lines[0] != "ready" || json.Unmarshal([]byte(lines[1]), &res) != nil ||
		len(res) != 1 || res[0].Kind != bench.AttackCollide {
		t.Errorf("printed %q", stdout)
	}

	r, _, stderr = testRunner(t, nil)
	r.stdin = strings.NewReader("not an order\n")
	if code := r.main(t.Context(), []string{"bench", "--attack-only"}); code != exitFailure || !strings.Contains(stderr.String(), "attack order") {
		t.Errorf("exit %d; stderr: %s", code, stderr)
	}
}
