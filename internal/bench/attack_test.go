package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseAttackKinds(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
		err  string
	}{
		{"all", attackKinds, ""},
		{"collide", []string{AttackCollide}, ""},
		{"slow, flood,slow", []string{AttackSlow, AttackFlood}, ""},
		{"flood,collide", []string{AttackCollide, AttackFlood}, ""},
		{"collide,all", attackKinds, ""},
		{"sloww", nil, `unknown attack "sloww"`},
		{"all,sloww", nil, `unknown attack "sloww"`},
		{"", nil, `unknown attack ""`},
	} {
		got, err := ParseAttackKinds(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%q: %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestCollideBody(t *testing.T) {
	body := collideBody(DefaultAttackBody)
	if len(body) > DefaultAttackBody {
		t.Fatalf("%d bytes, over %d", len(body), DefaultAttackBody)
	}
	var m map[string]int
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	folded := map[string]int{}
	for k := range m {
		folded[strings.ToLower(k)]++
	}
	// Every key has a twin that differs only by case: ~90k keys in 1 MiB.
	if len(m) < 80000 || len(folded)*2 != len(m) {
		t.Errorf("%d keys folding to %d", len(m), len(folded))
	}
	for k, n := range folded {
		if n != 2 {
			t.Fatalf("%q folds from %d keys, want 2", k, n)
		}
	}
	if got := string(collideBody(20)); got != `{"k0":0,"K0":0}` {
		t.Errorf("20 bytes: %s", got)
	}
	if got := string(collideBody(5)); got != `{}` {
		t.Errorf("5 bytes: %s", got)
	}
}

func TestArrayBody(t *testing.T) {
	body := arrayBody(DefaultAttackBody)
	if len(body) > DefaultAttackBody {
		t.Fatalf("%d bytes, over %d", len(body), DefaultAttackBody)
	}
	var a []struct{}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if len(a) < 340000 {
		t.Errorf("%d elements", len(a))
	}
	if got := string(arrayBody(7)); got != "[{},{}]" {
		t.Errorf("7 bytes: %s", got)
	}
	if got := string(arrayBody(1)); got != "[{}]" {
		t.Errorf("1 byte: %s", got)
	}
}

func TestHealthSummary(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	h := healthSummary(lat, 3)
	if h.Samples != 100 || h.Failed != 3 || h.P50 != 50 || h.P99 != 99 || h.Max != 100 {
		t.Errorf("%+v", h)
	}
	if h := healthSummary(nil, 0); h != (HealthResult{}) {
		t.Errorf("no samples: %+v", h)
	}
}

func TestAttackChecks(t *testing.T) {
	quiet := &Result{Latency: Latency{P99: 10}, Deliveries: DeliveryResult{Expected: 100, Received: 100},
		Publish: PublishResult{Planned: 10, Sent: 10}}
	calm := &Result{Latency: Latency{P99: 19}, Deliveries: DeliveryResult{Expected: 100, Received: 100},
		Publish: PublishResult{Planned: 10, Sent: 10}}
	res := &AttackResult{Quiet: quiet, Attacked: calm, RSSIdle: 20 << 20, RSSPeak: 200 << 20,
		AttackHealth: HealthResult{Samples: 10, P99: 30, Max: 90}}
	for _, c := range attackChecks(res) {
		if !c.Held {
			t.Errorf("%+v not held", c)
		}
	}
	hurt := &Result{Latency: Latency{P99: 25}, Deliveries: DeliveryResult{Expected: 100, Received: 99, Lost: 1},
		Publish: PublishResult{Planned: 10, Sent: 9}}
	res = &AttackResult{Quiet: quiet, Attacked: hurt, RSSIdle: 20 << 20, RSSPeak: 300 << 20,
		AttackHealth: HealthResult{Samples: 10, Failed: 1, P99: 30, Max: 90}}
	checks := attackChecks(res)
	if len(checks) != 5 {
		t.Fatalf("%d checks", len(checks))
	}
	for _, c := range checks {
		if c.Held {
			t.Errorf("%+v held", c)
		}
	}
	if !strings.Contains(checks[0].Got, "2.50×") || !strings.Contains(checks[2].Got, "9 of 10, 0 failed") || !strings.Contains(checks[3].Got, "280.0 MiB") {
		t.Errorf("figures: %+v", checks)
	}
}

func TestInternalAddrArg(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		want  string
		found bool
	}{
		{nil, "", false},
		{[]string{"--send-queue=4"}, "", false},
		{[]string{"--internal-addr=127.0.0.1:9"}, "127.0.0.1:9", true},
		{[]string{"-internal-addr", "127.0.0.1:8", "--x"}, "127.0.0.1:8", true},
		{[]string{"--internal-addr="}, "", true},
		{[]string{"--internal-addr=a:1", "--internal-addr", "b:2"}, "b:2", true},
		{[]string{"internal-addr=a:1"}, "", false},
	} {
		got, found := internalAddrArg(tt.args)
		if got != tt.want || found != tt.found {
			t.Errorf("%q: %q, %v; want %q, %v", tt.args, got, found, tt.want, tt.found)
		}
	}
}

func TestSlowHead(t *testing.T) {
	head := slowHead("h:1", "/rest/x", 1000)
	req, err := readRequestHead(head)
	if err != nil {
		t.Fatal(err)
	}
	if req != "POST /rest/x HTTP/1.1|h:1|1000" {
		t.Errorf("head %q", req)
	}
}

// readRequestHead parses a request head with net/http's reader and
// returns "request line|host|content length".
func readRequestHead(head []byte) (string, error) {
	br := bufio.NewReader(strings.NewReader(string(head)))
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	var host, length string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			break
		}
		name, value, _ := strings.Cut(l, ": ")
		switch name {
		case "Host":
			host = value
		case "Content-Length":
			length = value
		}
	}
	return strings.TrimRight(line, "\r\n") + "|" + host + "|" + length, nil
}

func TestTrickleEndsWhenTheServerCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		// Read the head and two trickled bytes, then hang up.
		buf := make([]byte, 0, 256)
		tmp := make([]byte, 256)
		for !strings.HasSuffix(string(buf), "\r\n\r\n[ ") {
			n, err := c.Read(tmp)
			if err != nil {
				break
			}
			buf = append(buf, tmp[:n]...)
		}
		got <- string(buf)
		c.Close()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := slowHead("x", "/pubweb/", 10)
	errc := make(chan error, 1)
	go func() { errc <- trickle(t.Context(), conn, head, 5*time.Millisecond) }()
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("trickle: %v, want a write error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("trickle went on writing to a closed connection")
	}
	if s := <-got; s != string(head)+"[ " {
		t.Errorf("server read %q", s)
	}
}

func TestTrickleStopsWithContext(t *testing.T) {
	client, srv := net.Pipe()
	defer srv.Close()
	go func() { _, _ = io.Copy(io.Discard, srv) }()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- trickle(ctx, client, []byte("head"), time.Hour) }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("trickle: %v, want context.Canceled", err)
	}
}

// startServerInternal runs a pushpull server with its trusted routes on a
// second listener and returns both URLs.
func startServerInternal(t *testing.T) (public, trusted string) {
	t.Helper()
	return serveForTest(t, true)
}

func TestInternalURL(t *testing.T) {
	public, trusted := startServerInternal(t)
	cfg := testConfig(public)
	// The public listener serves neither /server-stat/ nor /pub/.
	if _, err := Run(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "/server-stat/ answered 404") {
		t.Errorf("without the trusted URL: %v, want a 404 from /server-stat/", err)
	}
	cfg.InternalURL = trusted
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res, int64(cfg.Subscribers))
	cfg.InternalURL = "ftp://x"
	if err := cfg.Check(); err == nil || !strings.Contains(err.Error(), "internal url") {
		t.Errorf("bad internal url: %v", err)
	}
}

func TestRunAttack(t *testing.T) {
	cfg := attackRunConfig(t, 10)
	ac := AttackConfig{Kinds: AttackKinds(), Workers: 1, SlowClients: 3, SlowEvery: 20 * time.Millisecond,
		Flood: 2, BodySize: 4096, HealthEvery: 20 * time.Millisecond}
	res, err := RunAttack(t.Context(), cfg, ac)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res.Quiet, int64(cfg.Subscribers))
	checkDelivered(t, res.Attacked, int64(cfg.Subscribers))
	if res.QuietHealth.Samples == 0 || res.AttackHealth.Samples == 0 || res.RSSIdle <= 0 || res.RSSPeak <= 0 {
		t.Errorf("health %+v / %+v, rss %d → %d", res.QuietHealth, res.AttackHealth, res.RSSIdle, res.RSSPeak)
	}
	if len(res.Attackers) != len(attackKinds) || len(res.Checks) != 5 || res.Stopped != "" {
		t.Fatalf("attackers %+v, checks %+v, stopped %q", res.Attackers, res.Checks, res.Stopped)
	}
	want := map[string]int{AttackCollide: 1, AttackArray: 1, AttackSlow: 3, AttackFlood: 2}
	for _, a := range res.Attackers {
		if a.Clients != want[a.Kind] {
			t.Errorf("%s: %d clients, want %d", a.Kind, a.Clients, want[a.Kind])
		}
	}
	// Slow clients count a request as they connect.
	if slow := res.Attackers[2]; slow.Kind != AttackSlow || slow.Requests < 3 {
		t.Errorf("slow: %+v", slow)
	}
}

func TestRunAttackStopsOverMaxRSS(t *testing.T) {
	cfg := attackRunConfig(t, 5)
	// Any process is over one byte: the attackers stop at once.
	res, err := RunAttack(t.Context(), cfg, AttackConfig{Kinds: []string{AttackSlow}, SlowClients: 1, MaxRSS: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Stopped, "over the 0 MiB limit") {
		t.Errorf("stopped %q", res.Stopped)
	}
	checkDelivered(t, res.Attacked, int64(cfg.Subscribers))
}

func TestAttackConfig(t *testing.T) {
	if _, err := (AttackConfig{}).complete(); err == nil {
		t.Error("no error without kinds")
	}
	if _, err := (AttackConfig{Kinds: []string{"x"}}).complete(); err == nil {
		t.Error("no error for an unknown kind")
	}
	ac, err := AttackConfig{Kinds: []string{AttackCollide, AttackSlow}}.complete()
	if err != nil || ac.connections() != DefaultAttackWorkers+DefaultSlowClients+1 {
		t.Errorf("%+v, %v: %d connections", ac, err, ac.connections())
	}
	cfg := testConfig("http://127.0.0.1:1")
	cfg.Soak = true
	if _, err := RunAttack(t.Context(), cfg, AttackConfig{Kinds: []string{AttackSlow}}); err == nil {
		t.Error("no error for a soak under attack")
	}
}

// attackHelperEnv makes this test binary the attack process of
// TestRunAttackInAProcess.
const attackHelperEnv = "PUSHPULL_BENCH_ATTACK_HELPER"

// TestAttackProcessHelper is not a test: run by TestRunAttackInAProcess
// with attackHelperEnv set, it is the attack process.
func TestAttackProcessHelper(t *testing.T) {
	if os.Getenv(attackHelperEnv) != "1" {
		t.Skip("the attack process of TestRunAttackInAProcess")
	}
	if err := ServeAttack(t.Context(), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Before the test framework writes its own verdict to stdout.
	os.Exit(0)
}

func TestRunAttackInAProcess(t *testing.T) {
	cfg := attackRunConfig(t, 5)
	t.Setenv(attackHelperEnv, "1")
	ac := AttackConfig{Kinds: []string{AttackSlow, AttackFlood}, SlowClients: 2, SlowEvery: 20 * time.Millisecond,
		Flood: 2, BodySize: 4096, HealthEvery: 20 * time.Millisecond, Nice: 5,
		Command: []string{os.Args[0], "-test.run=^TestAttackProcessHelper$"}}
	// Before the start: the thread that starts the child is lowered.
	own, ownErr := procNice(os.Getpid())
	res, err := RunAttack(t.Context(), cfg, ac)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res.Attacked, int64(cfg.Subscribers))
	p := res.AttackProcess
	if p == nil || p.PID == 0 || p.PID == os.Getpid() {
		t.Fatalf("attack process %+v", p)
	}
	if runtime.GOOS == "linux" {
		if ownErr != nil || p.Nice != min(own+5, 19) {
			t.Errorf("attack process nice %d, want 5 over %d (%v)", p.Nice, own, ownErr)
		}
	}
	if c := res.Attacked.AttackerCPU; c == nil || !c.Known {
		t.Errorf("attacker CPU %+v", c)
	}
	if len(res.Attackers) != 2 || res.Attackers[0].Kind != AttackSlow || res.Attackers[0].Clients != 2 ||
		res.Attackers[0].Requests < 2 || res.Attackers[1].Kind != AttackFlood || res.Attackers[1].Clients != 2 {
		t.Errorf("attackers %+v", res.Attackers)
	}
}

func TestRunAttackProcessThatFails(t *testing.T) {
	cfg := attackRunConfig(t, 2)
	// The test binary without the helper's variable runs no helper: it
	// never answers ready.
	ac := AttackConfig{Kinds: []string{AttackSlow}, SlowClients: 1,
		Command: []string{os.Args[0], "-test.run=^$"}}
	if _, err := RunAttack(t.Context(), cfg, ac); err == nil || !strings.Contains(err.Error(), "attack process") {
		t.Errorf("got %v, want an attack process error", err)
	}
}

func TestServeAttackWithoutStart(t *testing.T) {
	order := `{"host":"127.0.0.1:1","addr":"127.0.0.1:1","config":{"Kinds":["slow"],"SlowClients":1}}` + "\n"
	var out bytes.Buffer
	// The order, then the end of input: stopped before starting.
	if err := ServeAttack(t.Context(), strings.NewReader(order), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || lines[0] != readyLine {
		t.Fatalf("printed %q", out.String())
	}
	var res []AttackKindResult
	if err := json.Unmarshal([]byte(lines[1]), &res); err != nil || len(res) != 1 || res[0].Kind != AttackSlow || res[0].Requests != 0 {
		t.Errorf("results %q: %+v, %v", lines[1], res, err)
	}
	if err := ServeAttack(t.Context(), strings.NewReader("{bad\n"), &out); err == nil {
		t.Error("no error for a bad order")
	}
}

// With Sources, senders come from as many loopback addresses, in turn, as
// a distributed attack's clients would.
func TestAttackSources(t *testing.T) {
	seen := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		seen <- host
	}))
	defer srv.Close()
	a := &attackers{ac: AttackConfig{Sources: 3}}
	for i, want := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"} {
		c := &httpConn{addr: srv.Listener.Addr().String(), host: "x", dialTimeout: 30 * time.Second, local: a.source(i)}
		if _, err := c.do(context.Background(), "POST", []byte("/pubweb/"), []byte("x"), 30*time.Second); err != nil {
			t.Fatal(err)
		}
		c.close()
		if got := <-seen; got != want {
			t.Fatalf("sender %d came from %s; want %s", i, got, want)
		}
	}
	if (&attackers{ac: AttackConfig{Sources: 1}}).source(5) != nil {
		t.Fatal("one source picks an address")
	}
}

// attackRunConfig is a bench run of n subscribers against a server of its
// own with both listeners, starting to publish at once.
func attackRunConfig(t *testing.T, n int) Config {
	t.Helper()
	public, trusted := startServerInternal(t)
	cfg := testConfig(public)
	cfg.InternalURL = trusted
	cfg.Subscribers = n
	cfg.Settle = 0
	return cfg
}
