// Package bench is the load generator behind `pushpull bench`: it connects
// subscribers to a push server over WebSocket or long polling, publishes
// timestamped messages through /pub/ at a set rate, and measures what
// arrives (lost, duplicated, publish→deliver latency) and what it cost the
// server (memory per connection from /proc/PID/status, CPU per delivery
// from /proc/PID/stat).
//
// The client is built not to be the bottleneck: one goroutine per
// connection reads frames with gobwas/ws's low-level header reader into a
// reused buffer, frames are scanned for the few fields needed instead of
// being decoded, latencies go to fixed-size sharded histograms, and
// publishers and long polls speak HTTP/1.1 keep-alive on raw connections.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

// Transports and modes.
const (
	TransportWS = "ws"
	TransportLP = "lp"
	ModeFanout  = "fanout"
	ModePrivate = "private"
)

// Config describes one bench run.
type Config struct {
	// URL is the server's base URL, like http://127.0.0.1:8080; the bench
	// subscribes on /sub/ under it.
	URL string
	// InternalURL is the base URL of the server's trusted listener
	// (--internal-addr), where /pub/ and /server-stat/ are; empty: URL (a
	// server run with --internal-addr same).
	InternalURL string
	// PublishURL, when set, is where publishes go instead of InternalURL:
	// another node of a cluster, to measure cross-node delivery.
	PublishURL string
	// ServerPID is the server's process id for memory and CPU figures; 0
	// means ask /server-stat/ (only used when URL's host is a loopback
	// address, where /proc describes the same machine).
	ServerPID int
	// SignatureKey and SignatureAlgo (sha1 or sha256; empty: sha1) sign the
	// subscribers' channels as the server expects.
	SignatureKey  string
	SignatureAlgo string

	Subscribers int
	Transport   string // TransportWS or TransportLP
	// Binary subscribes with binaryMode=true (protobuf, protocol version 4).
	Binary bool
	Mode   string // ModeFanout or ModePrivate
	// Rate is publishes per second, for Duration; Payload is the body size in
	// bytes; Publishers is how many keep-alive publishing connections share
	// the rate.
	Rate       float64
	Duration   time.Duration
	Payload    int
	Publishers int
	// Idle only connects and measures memory; nothing is published.
	Idle bool
	// Storm drops every WebSocket subscriber once they are ready, publishes
	// while they are away, and reconnects them all with their last mid
	// within StormWindow (0: DefaultStormWindow): each must recover exactly
	// what it missed.
	Storm       bool
	StormWindow time.Duration
	// Soak samples the server's memory, open files, threads and goroutines
	// every SampleEvery (0: DefaultSampleEvery) while publishing, and
	// reports their growth from the end of Warmup (0: a tenth of Duration)
	// to the end against MaxDrift percent (0: DefaultMaxDrift).
	Soak        bool
	SampleEvery time.Duration
	Warmup      time.Duration
	MaxDrift    float64

	// ConnectRate is new connections per second while ramping up;
	// ConnectConcurrency bounds the handshakes in flight.
	ConnectRate        float64
	ConnectConcurrency int
	DialTimeout        time.Duration
	// Settle is the pause after connecting before server memory is read.
	Settle time.Duration
	// ReadyTimeout bounds the wait for every subscriber to receive a probe
	// message before publishing starts (0: 10 s plus 1 s per 1,000).
	ReadyTimeout time.Duration
	// Drain bounds the wait for late deliveries after the last publish.
	Drain time.Duration

	// Progress, if not nil, gets a line as each phase starts and ends.
	Progress io.Writer
}

// Defaults for the zero fields of Config.
const (
	DefaultConnectRate        = 5000
	DefaultConnectConcurrency = 200
	DefaultDialTimeout        = 10 * time.Second
	DefaultSettle             = 2 * time.Second
	DefaultDrain              = 5 * time.Second
	DefaultPayload            = 100
	// The default ready timeout is 10 s plus this much per subscriber.
	readyTimeoutPerSubscriber = time.Millisecond
	// maxBitsetBytes bounds the delivery bitset (subscribers × publishes).
	maxBitsetBytes = 1 << 30
	// fdReserve is what the bench keeps for itself besides connections.
	fdReserve = 64
	// publishTimeout bounds one POST /pub/.
	publishTimeout = 10 * time.Second
	// probeBatch is how many channels one readiness probe publish names;
	// servers cap CHANNEL_ID lists at 100 by default.
	probeBatch = 50
)

// Result is what a run measured. Fields that could not be measured are 0;
// the *Known flags tell which server figures are real.
type Result struct {
	URL         string  `json:"url"`
	ServerPID   int     `json:"server_pid,omitempty"`
	Transport   string  `json:"transport"`
	Binary      bool    `json:"binary"`
	Mode        string  `json:"mode"`
	Subscribers int     `json:"subscribers"`
	Idle        bool    `json:"idle"`
	Rate        float64 `json:"rate"`
	DurationSec float64 `json:"duration_s"`
	Payload     int     `json:"payload_bytes"`
	Publishers  int     `json:"publishers"`

	Connect    ConnectResult  `json:"connect"`
	Storm      *StormResult   `json:"storm,omitempty"`
	Soak       *SoakResult    `json:"soak,omitempty"`
	Memory     MemoryResult   `json:"memory"`
	Ready      ReadyResult    `json:"ready"`
	Publish    PublishResult  `json:"publish"`
	Deliveries DeliveryResult `json:"deliveries"`
	Latency    Latency        `json:"latency"`
	ServerCPU  CPUResult      `json:"server_cpu"`
	ClientCPU  CPUResult      `json:"client_cpu"`
	// AttackerCPU is the attack process's CPU (attack runs whose attackers
	// are not in the bench's process).
	AttackerCPU *CPUResult    `json:"attacker_cpu,omitempty"`
	MachineCPU  MachineResult `json:"machine_cpu"`
	Disconnects []ErrorCount  `json:"disconnects,omitempty"`
	// ServerLog is what a spawned server logged (filled in by the caller).
	ServerLog []LogCount `json:"server_log,omitempty"`
}

// ConnectResult is the ramp-up.
type ConnectResult struct {
	Established int          `json:"established"`
	Failed      int          `json:"failed"`
	Seconds     float64      `json:"seconds"`
	Errors      []ErrorCount `json:"errors,omitempty"`
	// ServerCount is what /server-stat/ reported afterwards (websockets or
	// pollings, minus what it reported before), -1 if unknown.
	ServerCount int64 `json:"server_count"`
}

// MemoryResult is the server's resident memory, in bytes.
type MemoryResult struct {
	Known       bool    `json:"known"`
	RSSBefore   int64   `json:"rss_before"`
	RSSAfter    int64   `json:"rss_after_connect"`
	PerConn     float64 `json:"rss_per_connection"`
	RSSEnd      int64   `json:"rss_end"`
	RSSPeak     int64   `json:"rss_peak"`
	SettleSec   float64 `json:"settle_s"`
	Unavailable string  `json:"unavailable,omitempty"`
}

// ReadyResult is the probe that checks every subscriber receives before
// measuring: subscriptions are attached asynchronously after a handshake.
type ReadyResult struct {
	Ready   int     `json:"ready"`
	Unready int     `json:"unready"`
	Seconds float64 `json:"seconds"`
}

// PublishResult is the publishing side.
type PublishResult struct {
	Planned int          `json:"planned"`
	Sent    int64        `json:"sent"`
	Failed  int64        `json:"failed"`
	Rate    float64      `json:"rate"`
	Seconds float64      `json:"seconds"`
	RTT     Latency      `json:"post_rtt"`
	Errors  []ErrorCount `json:"errors,omitempty"`
}

// DeliveryResult counts deliveries: one per (subscriber, publish) in fanout,
// one per publish in private mode.
type DeliveryResult struct {
	Expected   int64   `json:"expected"`
	Received   int64   `json:"received"`
	Lost       int64   `json:"lost"`
	Duplicated int64   `json:"duplicated"`
	OutOfOrder int64   `json:"out_of_order"`
	Misrouted  int64   `json:"misrouted"`
	Foreign    int64   `json:"foreign"`
	Malformed  int64   `json:"malformed"`
	PerSecond  float64 `json:"per_second"`
	// Seconds is from the first publish to the last delivery counted.
	Seconds  float64 `json:"seconds"`
	DrainSec float64 `json:"drain_s"`
}

// CPUResult is CPU time over the publish phase (first publish to the end of
// the drain).
type CPUResult struct {
	Known       bool    `json:"known"`
	Seconds     float64 `json:"seconds"`
	Cores       float64 `json:"cores"`
	PerDelivery float64 `json:"us_per_delivery"`
}

// MachineResult is the whole machine's CPU use over the publish phase, in
// cores. Rest is what neither the server nor the bench was charged: other
// processes (Others) and kernel interrupt work outside both, which on
// loopback is mostly this very traffic's TCP receive path run while a CPU
// was otherwise idle. Others or Steal (the hypervisor serving other
// guests) above 0.1 core make the figures of a run unreliable.
type MachineResult struct {
	Known  bool    `json:"known"`
	Busy   float64 `json:"busy_cores"`
	Rest   float64 `json:"rest_cores"`
	Others float64 `json:"other_processes_cores"`
	Steal  float64 `json:"steal_cores"`
}

// Reliable reports whether nothing else ran on the machine during the
// publish phase.
func (m MachineResult) Reliable() bool { return !m.Known || (m.Others <= 0.1 && m.Steal <= 0.1) }

// ErrorCount is one kind of error and how often it happened.
type ErrorCount struct {
	Error string `json:"error"`
	Count int    `json:"count"`
}

// Run runs one bench. It returns an error when the bench cannot run at all
// (bad configuration, server unreachable, file limit); what goes wrong with
// individual connections or publishes is counted in the Result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	r, err := newRun(cfg)
	if err != nil {
		return nil, err
	}
	return r.run(ctx)
}

// run is the state of one bench.
type run struct {
	cfg  Config
	addr string // host:port
	host string // Host header
	// statHost is the host:port of /server-stat/ (Config.InternalURL).
	statHost string
	// pubAddr and pubHost are where publishes go (Config.PublishURL).
	pubAddr string
	pubHost string
	// during, if set, starts as the publishing does; what it returns is
	// called when the publishing ends (attack runs).
	during func(ctx context.Context) (stop func())
	// attackerCPU, if set, is the CPU time the attack process has used so
	// far: it is reported apart and left out of the other processes.
	attackerCPU func() time.Duration
	attackerPID int
	// subURL is the subscribe URL, ws://host/sub/; the query is the Go
	// client's (pullclient.SubscribeURL) for the protocol version below.
	subURL string
	// version is 4 (protobuf) for binary subscribers, else 3 (text).
	version  int
	loopback bool
	signer   *channel.Signer
	fanout   bool
	planned  int64
	progress io.Writer

	subs []*sub
	// fanoutChannel is the shared channel (fanout mode).
	fanoutPub []byte
	// counting is set while measured deliveries are counted.
	counting atomic.Bool
	// closing is set when the bench drops its connections.
	closing atomic.Bool
	// dropping is set while a storm drops its connections on purpose.
	dropping atomic.Bool
	// stormStart is when a storm's reconnections began (unix ns).
	stormStart atomic.Int64
	// seen has a bit per expected delivery: (subscriber, seq) in fanout,
	// seq in private mode.
	seen []atomic.Uint64
	// targets holds, per seq, 1 + the subscriber it was sent to (private).
	targets []atomic.Int32
	lat     *recorder
	rtt     *recorder

	readers      sync.WaitGroup
	connectErrs  errCounts
	disconnects  errCounts
	publishErrs  errCounts
	publishedOK  atomic.Int64
	publishedBad atomic.Int64
}

// Check reports what is wrong with cfg, if anything, without running: a
// caller can check before it starts a server for the bench.
func (cfg Config) Check() error {
	_, err := cfg.complete()
	return err
}

// complete fills in the defaults of cfg and checks it.
func (cfg Config) complete() (Config, error) {
	if cfg.ConnectRate <= 0 {
		cfg.ConnectRate = DefaultConnectRate
	}
	if cfg.ConnectConcurrency <= 0 {
		cfg.ConnectConcurrency = DefaultConnectConcurrency
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.Settle < 0 {
		cfg.Settle = 0
	}
	if cfg.Drain <= 0 {
		cfg.Drain = DefaultDrain
	}
	if cfg.Publishers <= 0 {
		cfg.Publishers = 1
	}
	if cfg.Transport == "" {
		cfg.Transport = TransportWS
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeFanout
	}
	if cfg.StormWindow <= 0 {
		cfg.StormWindow = DefaultStormWindow
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = DefaultSampleEvery
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = cfg.Duration / 10
	}
	if cfg.MaxDrift <= 0 {
		cfg.MaxDrift = DefaultMaxDrift
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 10*time.Second + time.Duration(cfg.Subscribers)*readyTimeoutPerSubscriber
	}
	switch {
	case cfg.Subscribers < 1:
		return cfg, fmt.Errorf("subscribers: want at least 1, got %d", cfg.Subscribers)
	case cfg.Transport != TransportWS && cfg.Transport != TransportLP:
		return cfg, fmt.Errorf("transport: want ws or lp, got %q", cfg.Transport)
	case cfg.Mode != ModeFanout && cfg.Mode != ModePrivate:
		return cfg, fmt.Errorf("mode: want fanout or private, got %q", cfg.Mode)
	case cfg.SignatureKey == "":
		return cfg, errors.New("signature key: the server's key is needed to sign the subscribers' channels")
	case cfg.Payload < 0:
		return cfg, fmt.Errorf("payload: want 0 or more bytes, got %d", cfg.Payload)
	case !cfg.Idle && (cfg.Rate <= 0 || cfg.Duration <= 0):
		return cfg, errors.New("rate and duration: want both above 0 (or idle)")
	case cfg.Storm && (cfg.Idle || cfg.Transport != TransportWS):
		return cfg, errors.New("storm: wants WebSocket subscribers and publishes (not idle, not long polling)")
	case cfg.Soak && (cfg.Idle || cfg.Storm):
		return cfg, errors.New("soak: wants publishes (not idle) and no storm")
	case cfg.Soak && cfg.Warmup+2*cfg.SampleEvery > cfg.Duration:
		return cfg, fmt.Errorf("soak: a %s duration leaves too few samples after a %s warm-up every %s", cfg.Duration, cfg.Warmup, cfg.SampleEvery)
	}
	if cfg.SignatureAlgo != "" {
		if _, err := channel.ParseAlgo(cfg.SignatureAlgo); err != nil {
			return cfg, fmt.Errorf("signature algo: %w", err)
		}
	}
	if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("url: want http://HOST:PORT, got %q", cfg.URL)
	} else if u.Scheme == "https" && cfg.Transport != TransportWS {
		// Only the WebSocket dialer speaks TLS (trusting the system's
		// roots, or SSL_CERT_FILE); the long-poll client is raw HTTP.
		return cfg, fmt.Errorf("url: https is for WebSocket subscribers only, got --transport %s", cfg.Transport)
	}
	if cfg.InternalURL != "" {
		if u, err := url.Parse(cfg.InternalURL); err != nil || u.Scheme != "http" || u.Host == "" {
			return cfg, fmt.Errorf("internal url: want http://HOST:PORT, got %q", cfg.InternalURL)
		}
	}
	if cfg.PublishURL != "" {
		if u, err := url.Parse(cfg.PublishURL); err != nil || u.Scheme != "http" || u.Host == "" {
			return cfg, fmt.Errorf("publish url: want http://HOST:PORT, got %q", cfg.PublishURL)
		}
	}
	limit, err := fileLimit()
	if err != nil {
		return cfg, err
	}
	if need := uint64(cfg.Subscribers + cfg.Publishers + fdReserve); need > limit {
		return cfg, fmt.Errorf("%d subscribers need about %d open files but this process may open %d: "+
			"run at most %d subscribers per bench process (or raise the hard limit, ulimit -Hn)",
			cfg.Subscribers, need, limit, max(int(limit)-cfg.Publishers-fdReserve, 0))
	}
	if !cfg.Idle {
		bits := cfg.planned()
		if cfg.Mode == ModeFanout {
			bits *= int64(cfg.Subscribers)
		}
		if bits/8 > maxBitsetBytes {
			return cfg, fmt.Errorf("%d subscribers × %d publishes is too many deliveries to track; shorten the duration or lower the rate",
				cfg.Subscribers, cfg.planned())
		}
	}
	return cfg, nil
}

// planned is the number of publishes: rate × duration.
func (cfg Config) planned() int64 {
	return max(int64(cfg.Rate*cfg.Duration.Seconds()+0.5), 1)
}

func newRun(cfg Config) (*run, error) {
	cfg, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	algo := channel.SHA1
	if cfg.SignatureAlgo != "" {
		algo, _ = channel.ParseAlgo(cfg.SignatureAlgo) // checked by complete
	}
	u, _ := url.Parse(cfg.URL) // checked by complete
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	pubAddr, pubHost := addr, u.Host
	statHost := u.Host
	if cfg.InternalURL != "" {
		iu, _ := url.Parse(cfg.InternalURL) // checked by complete
		pubAddr, pubHost, statHost = iu.Host, iu.Host, iu.Host
		if iu.Port() == "" {
			pubAddr = net.JoinHostPort(iu.Hostname(), "80")
		}
	}
	if cfg.PublishURL != "" {
		pu, _ := url.Parse(cfg.PublishURL) // checked by complete
		pubAddr, pubHost = hostPort(pu), pu.Host
	}
	r := &run{
		cfg:      cfg,
		addr:     addr,
		host:     u.Host,
		statHost: statHost,
		pubAddr:  pubAddr,
		pubHost:  pubHost,
		subURL:   wsScheme(u.Scheme) + u.Host + "/sub/",

		version:  subscribeVersion(cfg.Binary),
		loopback: isLoopback(u.Hostname()),
		signer:   channel.NewSigner([]byte(cfg.SignatureKey), algo),
		fanout:   cfg.Mode == ModeFanout,
		progress: cfg.Progress,
		lat:      newRecorder(64),
		rtt:      newRecorder(cfg.Publishers),
	}
	if r.progress == nil {
		r.progress = io.Discard
	}
	if !cfg.Idle {
		r.planned = cfg.planned()
		bits := r.planned
		if r.fanout {
			bits *= int64(cfg.Subscribers)
		}
		r.seen = make([]atomic.Uint64, (bits+63)/64)
		if !r.fanout {
			r.targets = make([]atomic.Int32, r.planned)
		}
	}
	return r, nil
}

// hostPort is the address to dial for u, with the default port made explicit.
func hostPort(u *url.URL) string {
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.progress, "bench: "+format+"\n", args...)
}

func (r *run) run(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	res := &Result{
		URL: cfg.URL, Transport: cfg.Transport, Binary: cfg.Binary, Mode: cfg.Mode, Subscribers: cfg.Subscribers,
		Idle: cfg.Idle, Rate: cfg.Rate, DurationSec: cfg.Duration.Seconds(), Payload: cfg.Payload,
		Publishers: cfg.Publishers,
	}
	if cfg.Idle {
		res.Rate, res.DurationSec, res.Payload, res.Publishers = 0, 0, 0, 0
	}
	stat0, err := r.serverStat(ctx)
	if err != nil {
		return nil, err
	}
	pid := cfg.ServerPID
	if pid == 0 && r.loopback {
		pid = stat0.pid
	}
	res.ServerPID = pid
	mem := &res.Memory
	if pid == 0 {
		mem.Unavailable = "server pid unknown (not a loopback URL, or no pid in /server-stat/)"
	} else if mem.RSSBefore, _, err = procRSS(pid); err != nil {
		mem.Unavailable = err.Error()
	} else {
		mem.Known = true
	}

	// Connect.
	r.makeSubscribers()
	subsCtx, dropSubs := context.WithCancel(ctx)
	defer dropSubs()
	defer r.closeAll(dropSubs)
	r.logf("connecting %d %s subscribers (%s, up to %.0f/s)…", cfg.Subscribers, cfg.Transport, cfg.Mode, cfg.ConnectRate)
	t0 := time.Now()
	if err := r.connectAll(ctx, subsCtx, r.subs, cfg.ConnectRate); err != nil {
		return nil, err
	}
	con := &res.Connect
	con.Seconds = time.Since(t0).Seconds()
	for _, s := range r.subs {
		if s.connected {
			con.Established++
			s.wasConnected = true
		}
	}
	con.Failed = cfg.Subscribers - con.Established
	con.Errors = r.connectErrs.list()
	r.logf("connected %d, failed %d, in %.1fs", con.Established, con.Failed, con.Seconds)
	if con.Established == 0 {
		return res, fmt.Errorf("no subscriber could connect: %s", summarize(con.Errors))
	}

	// Let the server register the connections, then read its memory.
	con.ServerCount = r.waitServerCount(ctx, stat0, int64(con.Established))
	if err := sleepCtx(ctx, cfg.Settle); err != nil {
		return res, err
	}
	mem.SettleSec = cfg.Settle.Seconds()
	if mem.Known {
		if mem.RSSAfter, _, err = procRSS(pid); err != nil {
			mem.Known, mem.Unavailable = false, err.Error()
		} else {
			mem.PerConn = float64(mem.RSSAfter-mem.RSSBefore) / float64(con.Established)
		}
	}
	if cfg.Idle {
		r.finishMemory(res, pid)
		res.Disconnects = r.disconnects.list()
		return res, nil
	}

	// Probe until every subscriber receives, so that publishing starts
	// with all subscriptions attached.
	rd := &res.Ready
	t0 = time.Now()
	rd.Ready, rd.Unready = r.probe(ctx)
	rd.Seconds = time.Since(t0).Seconds()
	r.logf("%d subscribers ready, %d not, in %.1fs", rd.Ready, rd.Unready, rd.Seconds)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	// Let probe deliveries still in flight pass before measuring.
	if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
		return res, err
	}

	// Publish, then drain.
	alive := r.aliveSubscribers()
	if len(alive) == 0 {
		res.Disconnects = r.disconnects.list()
		return res, fmt.Errorf("every subscriber connection ended before publishing: %s", summarize(res.Disconnects))
	}
	r.logf("publishing %d messages at %g/s to %d subscribers (%s)…", r.planned, cfg.Rate, len(alive), cfg.Mode)
	cpu0, cpuErr := r.serverCPU(pid)
	self0 := selfCPU()
	var attacker0 time.Duration
	if r.attackerCPU != nil {
		attacker0 = r.attackerCPU()
	}
	machine0, machineErr := readMachineCPU()
	others0 := otherProcsCPU(pid, os.Getpid(), r.attackerPID)
	var storm *StormResult
	var sampler *rssSampler
	if cfg.Storm {
		storm = &StormResult{WindowSec: cfg.StormWindow.Seconds()}
		res.Storm = storm
		if mem.Known {
			storm.RSSSteady, _, _ = procRSS(pid)
		}
		sampler = startRSSSampler(pid)
		storm.Dropped = r.dropAll(ctx, stat0)
		r.logf("dropped %d subscribers; publishing while they are away", storm.Dropped)
	}
	r.counting.Store(true)
	start := time.Now()
	var soak *soakSampler
	if cfg.Soak {
		soak = r.startSoakSampler(ctx, pid, start)
	}
	var stopDuring func()
	if r.during != nil {
		stopDuring = r.during(ctx)
	}
	r.publishAll(ctx, start, alive)
	pubEnd := time.Now()
	if stopDuring != nil {
		stopDuring()
	}
	if soak != nil {
		res.Soak = r.soakResult(soak.finish(r, ctx, pid, start))
	}
	sent := r.publishedOK.Load()
	expected := sent
	if r.fanout {
		expected *= int64(len(alive))
	}
	r.logf("sent %d publishes in %.1fs; draining…", sent, pubEnd.Sub(start).Seconds())
	drainFrom := pubEnd
	if storm != nil {
		storm.MissedPerClient = sent
		r.logf("reconnecting %d subscribers within %s…", storm.Dropped, cfg.StormWindow)
		if err := r.reconnectAll(ctx, subsCtx, storm); err != nil {
			sampler.finish()
			return res, err
		}
		r.logf("reconnected %d, failed %d, in %.1fs", storm.Reconnected, storm.Failed, storm.ReconnectSec)
		drainFrom = time.Now()
	}
	received := r.drain(ctx, expected, drainFrom.Add(cfg.Drain))
	drainEnd := time.Now()
	if storm != nil {
		storm.RSSPeak = sampler.finish()
		if storm.RSSSteady > 0 {
			storm.PeakRatio = float64(storm.RSSPeak) / float64(storm.RSSSteady)
		}
	}
	r.counting.Store(false)
	cpu1, cpuErr1 := r.serverCPU(pid)
	self1 := selfCPU()
	var attacker1 time.Duration
	if r.attackerCPU != nil {
		attacker1 = r.attackerCPU()
	}
	machine1, machineErr1 := readMachineCPU()
	others1 := otherProcsCPU(pid, os.Getpid(), r.attackerPID)
	r.logf("received %d of %d deliveries", received, expected)

	// Drop the connections and wait for their readers, so that their
	// counters can be read.
	r.closeAll(dropSubs)
	r.finishMemory(res, pid)

	pub := &res.Publish
	pub.Planned = int(r.planned)
	pub.Sent = sent
	pub.Failed = r.publishedBad.Load()
	// The last publish is due 1/rate before the end of the duration: a
	// phase that kept up counts as the whole duration.
	pub.Seconds = max(pubEnd.Sub(start), cfg.Duration).Seconds()
	pub.Rate = float64(sent) / pub.Seconds
	pub.RTT = r.rtt.snapshot().latency()
	pub.Errors = r.publishErrs.list()

	d := &res.Deliveries
	d.Expected = expected
	var lastRecv int64
	for _, s := range r.subs {
		d.Received += s.received.Load()
		d.Duplicated += s.dups
		d.OutOfOrder += s.outOfOrder
		d.Misrouted += s.misrouted
		d.Foreign += s.foreign
		d.Malformed += s.malformed
		lastRecv = max(lastRecv, s.lastRecv)
	}
	d.Lost = max(d.Expected-d.Received, 0)
	d.DrainSec = drainEnd.Sub(drainFrom).Seconds()
	if lastRecv > 0 {
		d.Seconds = time.Unix(0, lastRecv).Sub(start).Seconds()
		if d.Seconds > 0 {
			d.PerSecond = float64(d.Received) / d.Seconds
		}
	}
	res.Latency = r.lat.snapshot().latency()
	if storm != nil && lastRecv > 0 {
		storm.RecoverSec = time.Unix(0, lastRecv).Sub(time.Unix(0, r.stormStart.Load())).Seconds()
	}

	window := drainEnd.Sub(start).Seconds()
	if cpuErr == nil && cpuErr1 == nil {
		res.ServerCPU = cpuResult(cpu1-cpu0, window, d.Received)
	}
	res.ClientCPU = cpuResult(self1-self0, window, d.Received)
	attackerCores := 0.0
	if r.attackerCPU != nil {
		c := cpuResult(attacker1-attacker0, window, d.Received)
		res.AttackerCPU = &c
		attackerCores = c.Cores
	}
	if machineErr == nil && machineErr1 == nil && window > 0 {
		m := &res.MachineCPU
		m.Known = true
		m.Busy = (machine1.busy - machine0.busy).Seconds() / window
		m.Steal = (machine1.steal - machine0.steal).Seconds() / window
		// Without the server's pid, Rest and Others include the server.
		m.Rest = max(m.Busy-res.ServerCPU.Cores-res.ClientCPU.Cores-attackerCores, 0)
		m.Others = otherProcsDelta(others0, others1).Seconds() / window
	}
	res.Disconnects = r.disconnects.list()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("interrupted: %w", err)
	}
	return res, nil
}

func (r *run) finishMemory(res *Result, pid int) {
	if !res.Memory.Known {
		return
	}
	if rss, peak, err := procRSS(pid); err == nil {
		res.Memory.RSSEnd, res.Memory.RSSPeak = rss, peak
	}
}

func (r *run) serverCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, errors.New("server pid unknown")
	}
	return procCPU(pid)
}

func cpuResult(used time.Duration, window float64, deliveries int64) CPUResult {
	c := CPUResult{Known: true, Seconds: used.Seconds()}
	if window > 0 {
		c.Cores = c.Seconds / window
	}
	if deliveries > 0 {
		c.PerDelivery = float64(used.Microseconds()) / float64(deliveries)
	}
	return c
}

// drain waits until expected deliveries have arrived or until the deadline.
func (r *run) drain(ctx context.Context, expected int64, deadline time.Time) int64 {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var n int64
		for _, s := range r.subs {
			n += s.received.Load()
		}
		if n >= expected || !time.Now().Before(deadline) {
			return n
		}
		select {
		case <-ctx.Done():
			return n
		case <-tick.C:
		}
	}
}

// stat is the part of /server-stat/ the bench uses, summed over processes.
type stat struct {
	pid        int
	websockets int64
	pollings   int64
	// goroutines is the server's goroutine count, -1 when /server-stat/
	// does not report it.
	goroutines int64
}

func (r *run) serverStat(ctx context.Context) (stat, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.statHost+"/server-stat/", nil)
	if err != nil {
		return stat{}, fmt.Errorf("server stat: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return stat{}, fmt.Errorf("reach the server: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return stat{}, fmt.Errorf("server stat: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return stat{}, fmt.Errorf("server stat: GET /server-stat/ answered %s", resp.Status)
	}
	return parseStat(body)
}

// parseStat reads a /server-stat/ answer: one object per process.
func parseStat(body []byte) (stat, error) {
	var procs []struct {
		PID        int    `json:"pid"`
		WebSockets int64  `json:"websockets"`
		Pollings   int64  `json:"pollings"`
		Goroutines *int64 `json:"goroutines"`
	}
	if err := json.Unmarshal(body, &procs); err != nil {
		return stat{}, fmt.Errorf("server stat: %w", err)
	}
	st := stat{goroutines: -1}
	for i, p := range procs {
		if i == 0 && len(procs) == 1 {
			st.pid = p.PID
		}
		st.websockets += p.WebSockets
		st.pollings += p.Pollings
		if p.Goroutines != nil {
			st.goroutines = max(st.goroutines, 0) + *p.Goroutines
		}
	}
	return st, nil
}

// waitServerCount waits (up to 10 s) until /server-stat/ counts n more
// connections of the transport than before (or as many as are still up),
// and returns how many more it counts (-1 if it cannot tell).
func (r *run) waitServerCount(ctx context.Context, before stat, n int64) int64 {
	deadline := time.Now().Add(10 * time.Second)
	got := int64(-1)
	for {
		st, err := r.serverStat(ctx)
		if err != nil {
			return got
		}
		got = st.websockets - before.websockets
		if r.cfg.Transport == TransportLP {
			got = st.pollings - before.pollings
		}
		// Connections the server refused or dropped are not waited for.
		if n = min(n, int64(len(r.aliveSubscribers()))); got >= n || !time.Now().Before(deadline) || sleepCtx(ctx, 100*time.Millisecond) != nil {
			return got
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// newChannelID returns a random channel id, so that runs against the same
// server never share channels or history.
func newChannelID() channel.ID {
	var id channel.ID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	return id
}

// errCounts counts errors by kind.
type errCounts struct {
	mu     sync.Mutex
	counts map[string]int
	order  []string
}

func (e *errCounts) add(kind string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = map[string]int{}
	}
	if _, ok := e.counts[kind]; !ok {
		e.order = append(e.order, kind)
	}
	e.counts[kind]++
}

func (e *errCounts) list() []ErrorCount {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []ErrorCount
	for _, k := range e.order {
		out = append(out, ErrorCount{Error: k, Count: e.counts[k]})
	}
	return out
}

func summarize(errs []ErrorCount) string {
	var parts []string
	for _, e := range errs {
		parts = append(parts, fmt.Sprintf("%d× %s", e.Count, e.Error))
	}
	if len(parts) == 0 {
		return "no error reported"
	}
	return strings.Join(parts, "; ")
}

func subscribeVersion(binary bool) int {
	if binary {
		return 4
	}
	return 3
}

// wsScheme is the WebSocket scheme for a server URL's: wss for https.
func wsScheme(httpScheme string) string {
	if httpScheme == "https" {
		return "wss://"
	}
	return "ws://"
}
