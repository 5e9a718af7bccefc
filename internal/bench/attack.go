package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// An attack run measures what hostile clients cost the normal ones: the
// same fanout bench runs twice on one server, quietly first and then with
// attackers sending, over loopback, the request shapes that were found to
// hurt a push server. Every attacker is bounded in number and stops when the
// publishing ends.

// Attack kinds.
const (
	// AttackCollide sends JSON objects whose keys collide by case,
	// {"k0":0,"K0":0,…}, to the REST method that every client calls first.
	AttackCollide = "collide"
	// AttackArray sends [{},{},…] to /rest/.
	AttackArray = "array"
	// AttackSlow holds POSTs whose bodies trickle in a byte at a time.
	AttackSlow = "slow"
	// AttackFlood keeps a fixed number of unauthenticated full-size
	// requests in flight across every public route.
	AttackFlood = "flood"
)

// attackKinds lists every kind, in the order they are reported.
var attackKinds = []string{AttackCollide, AttackArray, AttackSlow, AttackFlood}

// AttackKinds returns the kinds of attack the bench knows.
func AttackKinds() []string { return slices.Clone(attackKinds) }

// ParseAttackKinds reads a comma-separated list of kinds; "all" names
// every kind. The kinds come back in the order they are reported.
func ParseAttackKinds(s string) ([]string, error) {
	var out []string
	all := false
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		switch {
		case k == "all":
			all = true
		case slices.Contains(attackKinds, k):
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		default:
			return nil, fmt.Errorf("unknown attack %q: want %s or all", k, strings.Join(attackKinds, ", "))
		}
	}
	if all {
		return AttackKinds(), nil
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(attackKinds, a) - slices.Index(attackKinds, b) })
	return out, nil
}

// Attack defaults.
const (
	DefaultAttackWorkers = 2
	DefaultSlowClients   = 300
	DefaultSlowEvery     = time.Second
	DefaultFlood         = 64
	DefaultAttackBody    = 1 << 20
	// DefaultAttackMaxRSS stops the attackers when the server's memory
	// passes it: on a server that is not bounded, the flood alone can take
	// the machine's memory, and other processes with it.
	DefaultAttackMaxRSS  = 4 << 30
	DefaultAttackNice    = 10
	DefaultHealthEvery   = 50 * time.Millisecond
	DefaultHealthTimeout = 2 * time.Second
	// attackTimeout bounds one attack request: long enough to see an
	// expensive answer through, short of hanging a run.
	attackTimeout = 60 * time.Second
)

// AttackConfig says which attackers run and how many of each.
type AttackConfig struct {
	Kinds []string
	// Workers is how many collide and array senders run, each sending one
	// request after the other.
	Workers int
	// SlowClients is how many trickled POSTs are held, each sending a byte
	// every SlowEvery.
	SlowClients int
	SlowEvery   time.Duration
	// Flood is how many full-size requests are kept in flight over the
	// public routes.
	Flood int
	// BodySize is the size of every attack body.
	BodySize int
	// Sources spreads the collide, array and flood senders over this many
	// loopback source addresses, 127.0.0.2 and up, so that they come from
	// as many clients as a distributed attack would; 0 or 1: the system's
	// choice (one address). The server must be on loopback.
	Sources int
	// MaxRSS stops the attackers when the server's RSS passes it.
	MaxRSS int64
	// HealthEvery and HealthTimeout: /healthz is asked every HealthEvery
	// on a new connection; an answer slower than HealthTimeout is a failure.
	HealthEvery   time.Duration
	HealthTimeout time.Duration
	// Command, when set, starts the attack process (ServeAttack) that
	// sends the attacks, such as pushpull bench --attack-only; empty: the
	// attackers run in this process, with the subscribers they disturb.
	Command []string `json:"-"`
	// Nice is added to the attack process's nice value (Linux), so that
	// the server and the measuring process come first for the cores.
	Nice int `json:"-"`
}

func (ac AttackConfig) complete() (AttackConfig, error) {
	if ac.Workers <= 0 {
		ac.Workers = DefaultAttackWorkers
	}
	if ac.SlowClients <= 0 {
		ac.SlowClients = DefaultSlowClients
	}
	if ac.SlowEvery <= 0 {
		ac.SlowEvery = DefaultSlowEvery
	}
	if ac.Flood <= 0 {
		ac.Flood = DefaultFlood
	}
	if ac.BodySize <= 0 {
		ac.BodySize = DefaultAttackBody
	}
	if ac.MaxRSS <= 0 {
		ac.MaxRSS = DefaultAttackMaxRSS
	}
	if ac.HealthEvery <= 0 {
		ac.HealthEvery = DefaultHealthEvery
	}
	if ac.HealthTimeout <= 0 {
		ac.HealthTimeout = DefaultHealthTimeout
	}
	if len(ac.Kinds) == 0 {
		return ac, errors.New("attack: name at least one kind")
	}
	for _, k := range ac.Kinds {
		if !slices.Contains(attackKinds, k) {
			return ac, fmt.Errorf("attack: unknown kind %q", k)
		}
	}
	return ac, nil
}

// connections is how many sockets the attackers hold at most.
func (ac AttackConfig) connections() int {
	n := 0
	for _, k := range ac.Kinds {
		switch k {
		case AttackCollide, AttackArray:
			n += ac.Workers
		case AttackSlow:
			n += ac.SlowClients
		case AttackFlood:
			n += ac.Flood
		}
	}
	return n + 1 // the health checker
}

// AttackResult compares a quiet run with one under attack.
type AttackResult struct {
	Quiet    *Result `json:"quiet"`
	Attacked *Result `json:"attacked"`
	// QuietHealth and AttackHealth are /healthz over each whole run.
	QuietHealth  HealthResult `json:"quiet_healthz"`
	AttackHealth HealthResult `json:"attack_healthz"`
	// RSSIdle is the server's RSS before anything connected; RSSPeak the
	// most sampled during the attacked run.
	RSSIdle int64 `json:"rss_idle"`
	RSSPeak int64 `json:"rss_peak_attacked"`
	// AttackProcess is the process the attackers ran in, when not the
	// bench's own; its CPU time is in Attacked.AttackerCPU.
	AttackProcess *AttackProcess `json:"attack_process,omitempty"`
	// Stopped says why the attackers were stopped early, if they were.
	Stopped   string              `json:"stopped,omitempty"`
	Attackers []AttackKindResult  `json:"attackers"`
	Checks    []Check             `json:"checks"`
	Config    attackConfigSummary `json:"config"`
}

type attackConfigSummary struct {
	Kinds       []string `json:"kinds"`
	Workers     int      `json:"workers"`
	SlowClients int      `json:"slow_clients"`
	SlowEvery   float64  `json:"slow_every_s"`
	Flood       int      `json:"flood"`
	BodySize    int      `json:"body_bytes"`
	MaxRSS      int64    `json:"max_rss"`
}

// AttackProcess describes the process the attackers ran in.
type AttackProcess struct {
	PID int `json:"pid"`
	// Nice is its nice value as the kernel reported it.
	Nice int `json:"nice"`
}

// AttackKindResult is what one kind of attacker did and was answered.
type AttackKindResult struct {
	Kind    string `json:"kind"`
	Clients int    `json:"clients"`
	// Requests counts requests started (slow clients: connections
	// opened); Outcomes how they ended ("HTTP 400", "timeout", …, or
	// unanswered when the attackers stopped).
	Requests int64        `json:"requests"`
	Outcomes []ErrorCount `json:"outcomes,omitempty"`
	// Cut counts slow clients whose connection the server ended.
	Cut int64 `json:"cut,omitempty"`
}

// HealthResult is the /healthz latency sampled through a run.
type HealthResult struct {
	Samples int     `json:"samples"`
	Failed  int     `json:"failed"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

// Check is one bound an attack run is held to.
type Check struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Held bool   `json:"held"`
}

// RunAttack runs cfg quietly, then again under the attacks of ac, on the
// same server, and compares them.
func RunAttack(ctx context.Context, cfg Config, ac AttackConfig) (*AttackResult, error) {
	ac, err := ac.complete()
	if err != nil {
		return nil, err
	}
	if cfg.Idle || cfg.Storm || cfg.Soak {
		return nil, errors.New("attack: wants a plain publishing run (not idle, storm or soak)")
	}
	// Check the file limit with the attackers' sockets counted in.
	probe := cfg
	probe.Subscribers += ac.connections()
	if err := probe.Check(); err != nil {
		return nil, fmt.Errorf("with %d attack connections counted as subscribers: %w", ac.connections(), err)
	}
	quietRun, err := newRun(cfg)
	if err != nil {
		return nil, err
	}
	st, err := quietRun.serverStat(ctx)
	if err != nil {
		return nil, err
	}
	pid := cfg.ServerPID
	if pid == 0 && quietRun.loopback {
		pid = st.pid
	}
	if pid == 0 {
		return nil, errors.New("attack: the server's pid is needed to watch its memory (use --spawn or a loopback URL)")
	}
	res := &AttackResult{Config: attackConfigSummary{
		Kinds: ac.Kinds, Workers: ac.Workers, SlowClients: ac.SlowClients, SlowEvery: ac.SlowEvery.Seconds(),
		Flood: ac.Flood, BodySize: ac.BodySize, MaxRSS: ac.MaxRSS,
	}}
	if res.RSSIdle, _, err = procRSS(pid); err != nil {
		return nil, err
	}
	healthURL := "http://" + quietRun.host + "/healthz"

	quietRun.logf("quiet run first…")
	h := startHealth(ctx, healthURL, ac.HealthEvery, ac.HealthTimeout)
	res.Quiet, err = quietRun.run(ctx)
	res.QuietHealth = h.finish()
	if err != nil {
		return res, fmt.Errorf("quiet run: %w", err)
	}

	attacked, err := newRun(cfg)
	if err != nil {
		return res, err
	}
	var a attackLoad
	if len(ac.Command) > 0 {
		p, err := startAttackProc(ctx, attacked.host, attacked.addr, ac)
		if err != nil {
			return res, err
		}
		// A run that ends before its publishing started never stopped
		// the child: the end of its input does.
		defer p.closeStdin()
		res.AttackProcess = &AttackProcess{PID: p.pid, Nice: p.nice}
		attacked.attackerCPU, attacked.attackerPID = p.cpu, p.pid
		a = p
	} else {
		a = newAttackers(attacked.host, attacked.addr, ac)
	}
	rss := startRSSWatch(pid, ac.MaxRSS, a.halt)
	attacked.during = a.start
	attacked.logf("run under attack (%s)…", strings.Join(ac.Kinds, ", "))
	h = startHealth(ctx, healthURL, ac.HealthEvery, ac.HealthTimeout)
	res.Attacked, err = attacked.run(ctx)
	res.AttackHealth = h.finish()
	res.RSSPeak = rss.finish()
	res.Stopped = a.stoppedWhy()
	var resErr error
	res.Attackers, resErr = a.results()
	if err != nil {
		return res, fmt.Errorf("attacked run: %w", err)
	}
	if resErr != nil {
		return res, resErr
	}
	res.Checks = attackChecks(res)
	return res, nil
}

// Bounds an attack run is held to.
const (
	maxP99Ratio       = 2.0
	maxHealthMs       = 100.0
	maxRSSOverIdleMiB = 256
)

// attackChecks holds the attacked run to the bounds, against the quiet run.
func attackChecks(res *AttackResult) []Check {
	q, a := res.Quiet, res.Attacked
	var out []Check
	ratio := 0.0
	if q.Latency.P99 > 0 {
		ratio = a.Latency.P99 / q.Latency.P99
	}
	out = append(out, Check{
		Name: "subscribers' p99 latency", Want: fmt.Sprintf("≤ %g× quiet (%.2f ms)", maxP99Ratio, q.Latency.P99),
		Got: fmt.Sprintf("%.2f ms (%.2f×)", a.Latency.P99, ratio), Held: q.Latency.P99 > 0 && ratio <= maxP99Ratio,
	})
	out = append(out, Check{
		Name: "deliveries lost or duplicated", Want: "0",
		Got:  fmt.Sprintf("%d lost, %d duplicated of %d", a.Deliveries.Lost, a.Deliveries.Duplicated, a.Deliveries.Expected),
		Held: a.Deliveries.Lost == 0 && a.Deliveries.Duplicated == 0 && a.Deliveries.Expected > 0,
	})
	out = append(out, Check{
		Name: "publishes accepted", Want: fmt.Sprintf("as in the quiet run: %d of %d", q.Publish.Sent, q.Publish.Planned),
		Got:  fmt.Sprintf("%d of %d, %d failed", a.Publish.Sent, a.Publish.Planned, a.Publish.Failed),
		Held: a.Publish.Sent >= q.Publish.Sent && a.Publish.Failed == 0,
	})
	over := float64(res.RSSPeak-res.RSSIdle) / (1 << 20)
	out = append(out, Check{
		Name: "server RSS over idle", Want: fmt.Sprintf("≤ %d MiB", maxRSSOverIdleMiB),
		Got:  fmt.Sprintf("%.1f MiB (idle %.1f MiB, peak %.1f MiB)", over, float64(res.RSSIdle)/(1<<20), float64(res.RSSPeak)/(1<<20)),
		Held: over <= maxRSSOverIdleMiB,
	})
	h := res.AttackHealth
	out = append(out, Check{
		Name: "/healthz latency", Want: fmt.Sprintf("≤ %g ms, none failed", maxHealthMs),
		Got:  fmt.Sprintf("max %.1f ms, p99 %.1f ms, %d of %d failed", h.Max, h.P99, h.Failed, h.Samples),
		Held: h.Samples > 0 && h.Failed == 0 && h.Max <= maxHealthMs,
	})
	return out
}

// healthProbe asks /healthz on a new connection every interval.
type healthProbe struct {
	stop chan struct{}
	done sync.WaitGroup
	lat  []time.Duration
	fail int
}

func startHealth(ctx context.Context, url string, every, timeout time.Duration) *healthProbe {
	h := &healthProbe{stop: make(chan struct{})}
	// A new connection each time, as a load balancer's checker makes: a
	// server whose accept path is starved must show it.
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		defer client.CloseIdleConnections()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			t0 := time.Now()
			ok := healthOnce(ctx, client, url)
			if ctx.Err() != nil {
				return
			}
			h.lat = append(h.lat, time.Since(t0))
			if !ok {
				h.fail++
			}
			select {
			case <-h.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func healthOnce(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (h *healthProbe) finish() HealthResult {
	close(h.stop)
	h.done.Wait()
	return healthSummary(h.lat, h.fail)
}

// healthSummary is the exact quantiles of the samples.
func healthSummary(lat []time.Duration, failed int) HealthResult {
	res := HealthResult{Samples: len(lat), Failed: failed}
	if len(lat) == 0 {
		return res
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	res.P50, res.P99, res.Max = ms(at(0.50)), ms(at(0.99)), ms(s[len(s)-1])
	return res
}

// rssWatch samples a process's RSS, keeps the peak and calls over once
// when it passes limit.
type rssWatch struct {
	peak atomic.Int64
	stop chan struct{}
	done sync.WaitGroup
}

func startRSSWatch(pid int, limit int64, over func(string)) *rssWatch {
	w := &rssWatch{stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		t := time.NewTicker(rssSampleEvery)
		defer t.Stop()
		fired := false
		for {
			if rss, _, err := procRSS(pid); err == nil {
				if rss > w.peak.Load() {
					w.peak.Store(rss)
				}
				if rss > limit && !fired {
					fired = true
					over(fmt.Sprintf("the server's RSS reached %.0f MiB, over the %.0f MiB limit", float64(rss)/(1<<20), float64(limit)/(1<<20)))
				}
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *rssWatch) finish() int64 {
	close(w.stop)
	w.done.Wait()
	return w.peak.Load()
}

// attackers runs the attack goroutines of one run.
type attackers struct {
	host string // Host header
	addr string // host:port to dial
	ac   AttackConfig

	collide, array []byte
	kinds          map[string]*kindStats

	mu      sync.Mutex
	cancel  context.CancelFunc
	stopped string
	wg      sync.WaitGroup
}

type kindStats struct {
	clients  int
	requests atomic.Int64
	cut      atomic.Int64
	outcomes errCounts
}

func newAttackers(host, addr string, ac AttackConfig) *attackers {
	a := &attackers{host: host, addr: addr, ac: ac, kinds: map[string]*kindStats{}}
	a.collide = collideBody(ac.BodySize)
	a.array = arrayBody(ac.BodySize)
	for _, k := range ac.Kinds {
		a.kinds[k] = &kindStats{}
	}
	return a
}

// Public routes the attackers aim at: what a client may reach.
var (
	restRoute     = "/rest/pull.application.config.get" // what every client calls first
	slowRoutes    = []string{restRoute, "/pubweb/", "/oauth/token/"}
	floodRoutes   = []string{restRoute, "/rest/batch", "/rest/pull.channel.public.list", "/oauth/token/", "/pubweb/", "/sub/"}
	floodBodyKind = []string{AttackArray, AttackCollide}
)

// start launches every attacker; the function it returns stops them and
// waits for them.
func (a *attackers) start(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	a.cancel = cancel
	if a.stopped != "" {
		cancel()
	}
	a.mu.Unlock()
	for _, k := range a.ac.Kinds {
		ks := a.kinds[k]
		switch k {
		case AttackCollide, AttackArray:
			body := a.collide
			if k == AttackArray {
				body = a.array
			}
			ks.clients = a.ac.Workers
			for i := range a.ac.Workers {
				a.launch(func() { a.sender(ctx, ks, restRoute, body, a.source(i)) })
			}
		case AttackSlow:
			ks.clients = a.ac.SlowClients
			for i := range a.ac.SlowClients {
				a.launch(func() { a.slow(ctx, ks, slowRoutes[i%len(slowRoutes)]) })
			}
		case AttackFlood:
			ks.clients = a.ac.Flood
			for i := range a.ac.Flood {
				route := floodRoutes[i%len(floodRoutes)]
				body := a.array
				if floodBodyKind[(i/len(floodRoutes))%len(floodBodyKind)] == AttackCollide {
					body = a.collide
				}
				a.launch(func() { a.sender(ctx, ks, route, body, a.source(i)) })
			}
		}
	}
	return func() {
		cancel()
		a.wg.Wait()
	}
}

func (a *attackers) launch(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// halt stops the attackers early, for reason.
func (a *attackers) halt(reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped == "" {
		a.stopped = reason
	}
	if a.cancel != nil {
		a.cancel()
	}
}

func (a *attackers) stoppedWhy() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopped
}

// source is the local address the i-th sender dials from (AttackConfig.Sources):
// nil for the system's choice.
func (a *attackers) source(i int) *net.TCPAddr {
	if a.ac.Sources <= 1 {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, byte((2+i%a.ac.Sources)>>8), byte(2+i%a.ac.Sources))}
}

// sender posts body to route, one request after the other, until ctx ends,
// dialling from local (nil: the system's choice).
func (a *attackers) sender(ctx context.Context, ks *kindStats, route string, body []byte, local *net.TCPAddr) {
	c := &httpConn{addr: a.addr, host: a.host, dialTimeout: DefaultDialTimeout, local: local}
	defer c.close()
	target := []byte(route)
	for ctx.Err() == nil {
		ks.requests.Add(1)
		ans, err := c.do(ctx, "POST", target, body, attackTimeout)
		if ctx.Err() != nil {
			// The expensive requests are the ones still being worked on.
			ks.outcomes.add(unanswered)
			return
		}
		if err != nil {
			ks.outcomes.add(errKind(err))
			// A refused or reset connection must not become a busy loop.
			if sleepCtx(ctx, 100*time.Millisecond) != nil {
				return
			}
			continue
		}
		ks.outcomes.add("HTTP " + strconv.Itoa(ans.status))
	}
}

// unanswered is the outcome of a request still waiting for its answer when
// the attackers stop.
const unanswered = "unanswered when the attack stopped"

// slow holds one POST to route whose body never finishes: a byte every
// SlowEvery. When the server ends it, it opens another.
func (a *attackers) slow(ctx context.Context, ks *kindStats, route string) {
	head := slowHead(a.host, route, a.ac.BodySize)
	for ctx.Err() == nil {
		d := net.Dialer{Timeout: DefaultDialTimeout}
		conn, err := d.DialContext(ctx, "tcp", a.addr)
		if err != nil {
			if ctx.Err() == nil {
				ks.outcomes.add(errKind(err))
			}
			if sleepCtx(ctx, a.ac.SlowEvery) != nil {
				return
			}
			continue
		}
		ks.requests.Add(1)
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		err = trickle(ctx, conn, head, a.ac.SlowEvery)
		stop()
		_ = conn.Close()
		if ctx.Err() != nil {
			return
		}
		ks.cut.Add(1)
		ks.outcomes.add("cut: " + errKind(err))
	}
}

// slowHead is the request head of a slow POST announcing size body bytes.
func slowHead(host, route string, size int) []byte {
	return []byte("POST " + route + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: pushpull-bench\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(size) + "\r\n\r\n")
}

// trickle writes head, then one byte every interval until a write fails or
// ctx ends. Once the server has closed its side the next write or two fail.
func trickle(ctx context.Context, conn net.Conn, head []byte, every time.Duration) error {
	if _, err := conn.Write(head); err != nil {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	b := []byte("[")
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := conn.Write(b); err != nil {
			return err
		}
		b[0] = ' '
	}
}

func (a *attackers) results() ([]AttackKindResult, error) {
	var out []AttackKindResult
	for _, k := range attackKinds {
		ks, ok := a.kinds[k]
		if !ok {
			continue
		}
		out = append(out, AttackKindResult{
			Kind: k, Clients: ks.clients, Requests: ks.requests.Load(), Outcomes: ks.outcomes.list(), Cut: ks.cut.Load(),
		})
	}
	return out, nil
}

// collideBody is a JSON object of at most size bytes whose keys pair up
// case-insensitively: {"k0":0,"K0":0,"k1":0,"K1":0,…}.
func collideBody(size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i := 0; ; i++ {
		n := strconv.Itoa(i)
		pair := `"k` + n + `":0,"K` + n + `":0`
		sep := ","
		if i == 0 {
			sep = ""
		}
		if len(b)+len(sep)+len(pair)+1 > size {
			break
		}
		b = append(b, sep...)
		b = append(b, pair...)
	}
	return append(b, '}')
}

// arrayBody is a JSON array of empty objects of at most size bytes:
// [{},{},…].
func arrayBody(size int) []byte {
	n := max((size-1)/3, 1) // "[" then "{}," or "{}]" per element
	b := make([]byte, 0, 1+3*n)
	b = append(b, '[')
	b = append(b, bytes.Repeat([]byte("{},"), n)...)
	b[len(b)-1] = ']'
	return b
}
