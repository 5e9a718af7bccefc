package bench

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/testkit"
	"github.com/pushpull/pushpull/internal/wire"
)

const testKey = "bench-test-key"

// startServer runs a pushpull server in this process and returns its URL.
func startServer(t *testing.T) string {
	t.Helper()
	public, _ := serveForTest(t, false) // the bench publishes on its one URL
	return public
}

// serveForTest runs a pushpull server until the test ends and returns its
// public URL and the URL of its trusted routes: a second listener when
// internal is set, else the public one.
func serveForTest(t *testing.T, internal bool) (public, trusted string) {
	t.Helper()
	cfg := testkit.Config(t)
	cfg.SignatureKey = testKey
	if !internal {
		cfg.InternalAddr = config.SameAddr
	}
	s, err := server.New(cfg, testkit.Logger())
	if err != nil {
		t.Fatal(err)
	}
	srv := testkit.Serve(t, s, internal)
	return srv.URL, srv.Internal
}

func testConfig(url string) Config {
	return Config{
		URL:          url,
		SignatureKey: testKey,
		Subscribers:  20,
		Transport:    TransportWS,
		Mode:         ModeFanout,
		Rate:         50,
		Duration:     time.Second,
		Payload:      100,
		Publishers:   1,
		// Ends as soon as everything has arrived; long for loaded machines.
		Drain: 30 * time.Second,
	}
}

// checkDelivered checks the bench saw every delivery exactly once and
// filled in its figures. These are correctness checks of the bench, not
// performance assertions.
func checkDelivered(t *testing.T, res *Result, perPublish int64) {
	t.Helper()
	d := res.Deliveries
	if d.Expected != perPublish*res.Publish.Sent || d.Received != d.Expected || d.Lost != 0 || d.Duplicated != 0 {
		t.Errorf("deliveries: %+v, want %d per publish, all received once", d, perPublish)
	}
	if d.OutOfOrder != 0 || d.Misrouted != 0 || d.Foreign != 0 || d.Malformed != 0 {
		t.Errorf("deliveries: %+v", d)
	}
	if d.PerSecond <= 0 || d.Seconds <= 0 {
		t.Errorf("throughput not filled in: %+v", d)
	}
	l := res.Latency
	if l.Count != uint64(d.Received) || l.Max <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max {
		t.Errorf("latency: %+v", l)
	}
	p := res.Publish
	// A loaded machine may keep the publishers from sending all of the
	// planned publishes in time; what counts is that what was sent arrived.
	if p.Sent <= 0 || p.Sent > int64(p.Planned) || p.Failed != 0 || p.RTT.Count != uint64(p.Sent) || p.RTT.Max <= 0 {
		t.Errorf("publish: %+v", p)
	}
	if res.Connect.Established != res.Subscribers || res.Connect.Failed != 0 {
		t.Errorf("connect: %+v", res.Connect)
	}
	if res.Ready.Ready != res.Subscribers || res.Ready.Unready != 0 {
		t.Errorf("ready: %+v", res.Ready)
	}
	// The server runs in this process, whose /proc entry the bench reads.
	if !res.Memory.Known || res.Memory.RSSBefore <= 0 || res.Memory.RSSAfter <= 0 || res.Memory.RSSPeak <= 0 {
		t.Errorf("memory: %+v", res.Memory)
	}
	if !res.ServerCPU.Known || !res.ClientCPU.Known || !res.MachineCPU.Known || res.MachineCPU.Busy <= 0 {
		t.Errorf("cpu: server %+v, client %+v, machine %+v", res.ServerCPU, res.ClientCPU, res.MachineCPU)
	}
	if len(res.Disconnects) != 0 {
		t.Errorf("disconnects: %+v", res.Disconnects)
	}
}

func TestFanoutWebSocket(t *testing.T) {
	t.Parallel()
	cfg := testConfig(startServer(t))
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res, 20)
	if res.Connect.ServerCount != 20 {
		t.Errorf("server counted %d connections, want 20", res.Connect.ServerCount)
	}
}

func TestFanoutProtobuf(t *testing.T) {
	t.Parallel()
	for _, transport := range []string{TransportWS, TransportLP} {
		t.Run(transport, func(t *testing.T) {
			cfg := testConfig(startServer(t))
			cfg.Binary = true
			cfg.Transport = transport
			res, err := Run(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Binary {
				t.Error("result does not say binary")
			}
			checkDelivered(t, res, 20)
		})
	}
}

func TestPrivateWebSocket(t *testing.T) {
	t.Parallel()
	cfg := testConfig(startServer(t))
	cfg.Mode = ModePrivate
	cfg.Rate = 200
	cfg.Publishers = 4
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res, 1)
}

func TestFanoutLongPolling(t *testing.T) {
	t.Parallel()
	cfg := testConfig(startServer(t))
	cfg.Transport = TransportLP
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res, 20)
}

func TestPrivateLongPolling(t *testing.T) {
	t.Parallel()
	cfg := testConfig(startServer(t))
	cfg.Transport = TransportLP
	cfg.Mode = ModePrivate
	cfg.Rate = 100
	cfg.Publishers = 2
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res, 1)
}

func TestIdle(t *testing.T) {
	t.Parallel()
	cfg := testConfig(startServer(t))
	cfg.Idle = true
	cfg.Rate, cfg.Duration = 0, 0
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connect.Established != 20 || res.Connect.ServerCount != 20 {
		t.Errorf("connect: %+v", res.Connect)
	}
	if !res.Memory.Known || res.Memory.RSSAfter <= 0 {
		t.Errorf("memory: %+v", res.Memory)
	}
	if res.Publish.Sent != 0 || res.Deliveries.Expected != 0 {
		t.Errorf("an idle run published: %+v %+v", res.Publish, res.Deliveries)
	}
}

func TestWrongKeyFailsToConnect(t *testing.T) {
	t.Parallel()
	cfg := testConfig(startServer(t))
	cfg.SignatureKey = "not the server's key"
	cfg.Subscribers = 5
	res, err := Run(t.Context(), cfg)
	// The server refuses the channels after the upgrade (close 4010), so the
	// connections are established and then end, and nothing is published.
	if err == nil || !strings.Contains(err.Error(), "ended before publishing") || res == nil {
		t.Fatalf("err = %v", err)
	}
	if res.Connect.Established != 5 || res.Ready.Ready != 0 || res.Publish.Sent != 0 {
		t.Errorf("connect %+v, ready %+v, publish %+v", res.Connect, res.Ready, res.Publish)
	}
	found := false
	for _, d := range res.Disconnects {
		found = found || (strings.Contains(d.Error, "4010") && d.Count == 5)
	}
	if !found {
		t.Errorf("disconnects %+v, want 5× close 4010", res.Disconnects)
	}
}

func TestUnreachableServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	if _, err := Run(t.Context(), testConfig(url)); err == nil || !strings.Contains(err.Error(), "reach the server") {
		t.Errorf("err = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no subscribers", func(c *Config) { c.Subscribers = 0 }, "subscribers"},
		{"transport", func(c *Config) { c.Transport = "sse" }, "transport"},
		{"mode", func(c *Config) { c.Mode = "broadcast" }, "mode"},
		{"no key", func(c *Config) { c.SignatureKey = "" }, "signature key"},
		{"no rate", func(c *Config) { c.Rate = 0 }, "rate"},
		{"url", func(c *Config) { c.URL = "ws://127.0.0.1:1" }, "url"},
		{"https long polls", func(c *Config) { c.URL = "https://127.0.0.1:1"; c.Transport = TransportLP }, "https is for WebSocket"},
		{"algo", func(c *Config) { c.SignatureAlgo = "md5" }, "algo"},
		{"too many files", func(c *Config) { c.Subscribers = 1 << 30; c.Rate = 1 }, "open files"},
	} {
		cfg := testConfig("http://127.0.0.1:1")
		tt.change(&cfg)
		_, err := Run(t.Context(), cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tt.name, err, tt.want)
		}
	}
}

// TestHTTPSURLSubscribesOverWSS: an https server URL makes the subscribers
// dial wss://.
func TestHTTPSURLSubscribesOverWSS(t *testing.T) {
	r, err := newRun(testConfig("https://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.subURL, "wss://127.0.0.1:1/sub/") {
		t.Errorf("subscribers dial %q", r.subURL)
	}
}

// TestCountsDuplicatesAndLoss feeds frames to a subscriber directly.
func TestCountsDuplicatesAndLoss(t *testing.T) {
	r, err := newRun(testConfig("http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	r.subs = []*sub{{idx: 0}, {idx: 1}}
	r.counting.Store(true)
	now := time.Now().UnixNano()
	msg := func(mid string, seq int64) []byte {
		body := appendBody(nil, now-int64(time.Millisecond), seq, 10)
		return []byte(wire.FrameStart + `{"id":1,"mid":"` + mid + `","channel":"c","tag":"t","time":"x","text":` + string(body) + `}` + wire.FrameEnd)
	}
	a := r.subs[0]
	r.deliver(a, append(msg("00000000010000000000000001", 0), msg("00000000010000000000000002", 1)...), now)
	r.deliver(a, msg("00000000010000000000000002", 1), now)     // duplicate
	r.deliver(a, msg("00000000010000000000000000", 2), now)     // out of order
	r.deliver(a, msg("00000000010000000000000009", 1<<40), now) // not ours
	r.deliver(a, []byte(wire.FrameStart+`{"mid":"1"`), now)     // cut off
	r.deliver(r.subs[1], msg("00000000010000000000000001", 0), now)
	if got := a.received.Load(); got != 3 {
		t.Errorf("received %d, want 3", got)
	}
	if a.dups != 1 || a.outOfOrder != 1 || a.foreign != 1 || a.malformed != 1 {
		t.Errorf("dups %d, out of order %d, foreign %d, malformed %d; want 1 each", a.dups, a.outOfOrder, a.foreign, a.malformed)
	}
	if got := r.subs[1].received.Load(); got != 1 {
		t.Errorf("second subscriber received %d, want 1 (the same seq counts per subscriber)", got)
	}
	if h := r.lat.snapshot(); h.total != 4 || h.quantile(0.5) < 1000 || h.quantile(0.5) > 1100 {
		t.Errorf("latency: %d recorded, p50 %d µs; want 4 around 1000 µs", h.total, h.quantile(0.5))
	}
	if string(a.lastMid[:]) != "00000000010000000000000009" {
		t.Errorf("last mid %s", a.lastMid)
	}
}
