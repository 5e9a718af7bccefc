package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/bench"
	"github.com/pushpull/pushpull/internal/config"
)

const benchHelpHead = `Usage: pushpull bench [flags]

Loads a push server and measures it: connects --subscribers over WebSocket or
long polling, publishes --rate timestamped messages per second through /pub/
for --duration, and reports deliveries per second, publish→deliver latency
(p50/p90/p99/max), lost and duplicated deliveries, the server's memory per
connection and its CPU time per delivery.

--mode fanout puts every subscriber on one shared channel, so each publish
reaches all of them; --mode private gives each subscriber its own channel and
sends each publish to one subscriber picked at random. --idle only connects
and measures memory.

--storm is a reconnect storm: once every subscriber is ready the bench drops
them all, sends the publishes while they are away, then reconnects them all
with the mid of their last message within --storm-window. Each must recover
exactly what it missed (lost and duplicated count as usual; latency then
includes the outage); the server's peak memory during the storm is
reported against its steady state just before the drop. The server replays
at most --replay-per-channel (100) messages per channel: keep rate ×
duration within it.

--soak holds the subscribers for --duration while --rate publishes trickle
(1/s suits 15,000 fanout subscribers), samples the server's RSS, open files,
threads and goroutines (when /server-stat/ reports them) every
--sample-every, and reports each one's growth from the end of --warmup to
the end of the run against --max-drift percent, with every publish
accounted for (lost, duplicated).

--attack KINDS runs the bench twice on the same server: quietly first, then
with attackers sending over the same loopback, until the publishing ends:
collide (1 MiB JSON objects whose keys collide by case, to
/rest/pull.application.config.get), array (1 MiB [{},{},…] to /rest/), slow
(--attack-slow-clients POSTs to /rest/, /pubweb/ and /oauth/token/ whose
bodies trickle a byte every --attack-slow-every), flood (--attack-flood
full-size unauthenticated requests kept in flight across the public routes);
"all" is every kind. It compares the subscribers' p99 latency and losses
with the quiet run, reports the server's peak RSS over its idle RSS and
/healthz latency asked every 50 ms on a new connection, and checks the
bounds: p99 within 2× the quiet run's, every publish accepted and
delivered once, RSS within +256 MiB of idle, /healthz within 100 ms. The
attackers stop early when the server's RSS passes --attack-max-rss, so that
a server without bounds does not take the machine's memory. The attackers
run in a process of their own ("pushpull bench --attack-only", this
executable), with --attack-nice added to its nice value: an attacker's CPU
is on its own machine, not on the cores of the server and of the
subscribers that measure it. Its CPU time is reported apart.
--attack-in-process keeps them in the bench's process instead.

With --spawn --floor the bench starts the floor server instead: it checks
nothing, stores nothing, and writes each publish's one encoded frame to every
subscribed socket (merged per socket when it falls behind), the least any
server can spend per delivery; run the same bench with and without --floor and
compare the server CPU per delivery (WebSocket text subscribers only).
--floor-uring has it hand each worker's writes to many sockets to the kernel
in one io_uring_enter instead of one writev per socket; the server log line
at the end counts the system calls per delivery.

With --spawn the bench starts "pushpull serve" itself (this executable) on a
free loopback port with a temporary data dir and stops it with SIGTERM at the
end; it puts the trusted routes (/pub/, /server-stat/) on a second free
loopback port passed as --internal-addr (a --server-arg=--internal-addr=…
is used instead). --server-arg passes it more flags. With --url the server
must run with the same --signature-key, and --internal-url must reach its
trusted listener (--internal-addr), where the bench publishes and reads
/server-stat/. Server memory and CPU come from /proc/PID of the spawned
server, or of the pid that /server-stat/ reports when --url is a loopback
address; they are not reported for remote servers.

Run the bench on the server's machine only over loopback, and mind that the
bench shares the CPU with the server: its own CPU time is reported as well.
The open-file limit is raised to the hard limit first; one bench process can
hold about that many connections. Progress goes to standard error, the
result to standard output.

Flags:
`

const benchHelpTail = `
Examples:
  pushpull bench --spawn --subscribers 5000 --mode fanout --rate 50 --duration 20s --payload 100
  pushpull bench --spawn --subscribers 1000 --rate 10 --duration 10s --json > result.json
  pushpull bench --spawn --idle --subscribers 10000
  pushpull bench --spawn --subscribers 2000 --mode private --rate 5000 --publishers 8
  pushpull bench --spawn --transport lp --subscribers 1000 --rate 5
  pushpull bench --spawn --storm --subscribers 10000 --rate 10 --duration 2s --connect-rate 2000
  pushpull bench --spawn --server-arg=--send-queue=4096 --subscribers 5000 --rate 100
  pushpull bench --url http://127.0.0.1:8080 --signature-key "$KEY" --subscribers 500
  pushpull bench --url http://127.0.0.1:8080 --internal-url http://127.0.0.1:8895 --signature-key "$KEY"
  pushpull bench --url http://127.0.0.1:9000 --internal-url same --signature-key "$KEY"
  pushpull bench --spawn --soak --subscribers 15000 --rate 1 --duration 30m --connect-rate 2000
  pushpull bench --spawn --attack all --subscribers 1000 --rate 20 --duration 20s
  pushpull bench --spawn --floor --subscribers 5000 --rate 50 --duration 20s
`

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func (r *runner) bench(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "the server's base `URL` (not with --spawn)")
	internalURL := fs.String("internal-url", "http://127.0.0.1:8895",
		"the base `URL` of the server's trusted listener (--internal-addr), for /pub/ and /server-stat/; \"same\": --url (not with --spawn)")
	publishURL := fs.String("publish-url", "", "publish to this base `URL` instead of --url: another cluster node, for cross-node figures")
	spawn := fs.Bool("spawn", false, "start \"pushpull serve\" on a free loopback port for the bench, stop it after")
	floor := fs.Bool("floor", false, "with --spawn, start the floor server instead of pushpull: the least a server can spend per delivery (WebSocket text only)")
	floorUring := fs.Bool("floor-uring", false, "with --floor, the floor server submits each worker's writes to many sockets in one io_uring_enter instead of one writev per socket (Linux; writev where the kernel refuses io_uring)")
	serveFloor := fs.String("serve-floor", "", "serve only the floor server on `ADDR` until stopped (what --floor spawns)")
	var serverArgs stringList
	fs.Var(&serverArgs, "server-arg", "one more `FLAG` for the spawned server, like --send-queue=4096; repeatable")
	key := fs.String("signature-key", "", "the server's signature `KEY`; with --spawn, default: a random one")
	algo := fs.String("signature-algo", "sha1", "the server's signature `ALGO`, sha1 or sha256")
	subscribers := fs.Int("subscribers", 1000, "connect `N` subscribers")
	transport := fs.String("transport", "ws", "the subscribers' `TRANSPORT`: ws (WebSocket) or lp (long polling)")
	binary := fs.Bool("binary", false, "subscribe with binaryMode=true: protobuf deliveries (protocol version 4) instead of text frames")
	mode := fs.String("mode", "fanout", "the channel `MODE`: fanout (one shared channel) or private (a channel each, one recipient per publish)")
	rate := fs.Float64("rate", 10, "publish `R` messages per second in all")
	duration := fs.Duration("duration", 10*time.Second, "publish for this `DURATION`")
	payload := fs.Int("payload", bench.DefaultPayload, "size of each published body in `BYTES`")
	publishers := fs.Int("publishers", 1, "share the rate among `K` publishing keep-alive connections")
	connectRate := fs.Float64("connect-rate", bench.DefaultConnectRate, "open at most `RATE` new connections per second while ramping up")
	idle := fs.Bool("idle", false, "only connect and measure the server's memory; publish nothing")
	storm := fs.Bool("storm", false, "reconnect storm: drop every subscriber, publish while they are away, reconnect them all with their mid")
	stormWindow := fs.Duration("storm-window", bench.DefaultStormWindow, "with --storm, reconnect every subscriber within this `DURATION`")
	settle := fs.Duration("settle", bench.DefaultSettle, "after connecting, wait this `DURATION` before reading the server's memory")
	drain := fs.Duration("drain", bench.DefaultDrain, "after the last publish, wait at most this `DURATION` for late deliveries")
	dialTimeout := fs.Duration("dial-timeout", bench.DefaultDialTimeout, "give up on a connection and its handshake after this `DURATION`")
	soak := fs.Bool("soak", false, "soak: sample the server's memory, files, threads and goroutines while publishing, and report their drift")
	sampleEvery := fs.Duration("sample-every", bench.DefaultSampleEvery, "with --soak, sample the server every `DURATION`")
	warmup := fs.Duration("warmup", 0, "with --soak, leave out the samples of the first `DURATION`; 0 means a tenth of --duration")
	maxDrift := fs.Float64("max-drift", bench.DefaultMaxDrift, "with --soak, the growth in `PERCENT` after the warm-up that still holds")
	attack := fs.String("attack", "", "run quietly, then under these attacks: comma-separated `KINDS` of "+strings.Join(bench.AttackKinds(), ", ")+", or all")
	attackWorkers := fs.Int("attack-workers", bench.DefaultAttackWorkers, "with --attack, `N` senders each of collide and array")
	slowClients := fs.Int("attack-slow-clients", bench.DefaultSlowClients, "with --attack slow, hold `N` trickled POSTs")
	slowEvery := fs.Duration("attack-slow-every", bench.DefaultSlowEvery, "with --attack slow, send a byte of each body every `DURATION`")
	flood := fs.Int("attack-flood", bench.DefaultFlood, "with --attack flood, keep `N` requests in flight")
	attackSources := fs.Int("attack-sources", 1, "with --attack, spread the collide, array and flood senders over `N` loopback source addresses (127.0.0.2 and up), as a distributed attack would come from many clients")
	attackBody := fs.Int("attack-body", bench.DefaultAttackBody, "with --attack, the size of each attack body in `BYTES`")
	attackMaxRSS := fs.Int64("attack-max-rss", bench.DefaultAttackMaxRSS>>20, "with --attack, stop the attackers when the server's RSS passes `MIB` MiB")
	attackInProcess := fs.Bool("attack-in-process", false, "with --attack, run the attackers in the bench's process instead of a process of their own")
	attackNice := fs.Int("attack-nice", bench.DefaultAttackNice, "with --attack, add `N` to the attack process's nice value (0: the bench's priority)")
	attackOnly := fs.Bool("attack-only", false, "be the attack process of an --attack run: read its order on standard input (what --attack starts)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	writeHelp := func(w io.Writer) {
		_, _ = io.WriteString(w, benchHelpHead)
		writeFlags(w, fs)
		_, _ = io.WriteString(w, benchHelpTail)
	}
	if code, ok := r.parseFlags(fs, writeHelp, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return r.usageError("bench", "unexpected argument %q", fs.Arg(0))
	}
	if *serveFloor != "" {
		return r.serveFloor(ctx, *serveFloor, bench.FloorOptions{Uring: *floorUring})
	}
	if *attackOnly {
		if err := bench.ServeAttack(ctx, r.stdin, r.stdout); err != nil {
			return r.failure("bench", err)
		}
		return exitOK
	}
	urlSet := false
	fs.Visit(func(f *flag.Flag) { urlSet = urlSet || f.Name == "url" || f.Name == "internal-url" })
	if *internalURL == config.SameAddr {
		*internalURL = *base
	}
	var attackKinds []string
	if *attack != "" {
		var err error
		if attackKinds, err = bench.ParseAttackKinds(*attack); err != nil {
			return r.usageError("bench", "invalid --attack: %v", err)
		}
	}
	switch {
	case *spawn && urlSet:
		return r.usageError("bench", "--url and --internal-url exclude --spawn")
	case *soak && (*idle || *storm || *attack != ""):
		return r.usageError("bench", "--soak excludes --idle, --storm and --attack")
	case *attack != "" && (*idle || *storm):
		return r.usageError("bench", "--attack excludes --idle and --storm")
	case *sampleEvery <= 0 || *warmup < 0 || *maxDrift <= 0:
		return r.usageError("bench", "--sample-every and --max-drift want values above 0, --warmup 0 or more")
	case *attackWorkers < 1 || *slowClients < 1 || *flood < 1 || *attackBody < 1 || *attackMaxRSS < 1 || *slowEvery <= 0 || *attackSources < 1 || *attackSources > 65000:
		return r.usageError("bench", "the --attack-… counts, sizes and durations want values above 0")
	case *attackNice < 0 || *attackNice > 19:
		return r.usageError("bench", "invalid --attack-nice %d: want 0 to 19", *attackNice)
	case *floorUring && !*floor:
		return r.usageError("bench", "--floor-uring needs --floor")
	case *floor && (!*spawn || len(serverArgs) > 0):
		return r.usageError("bench", "--floor needs --spawn and takes no --server-arg")
	case *floor && (*transport != bench.TransportWS || *binary || *storm || *soak || *attack != ""):
		return r.usageError("bench", "--floor serves WebSocket text subscribers only (not lp, --binary, --storm, --soak, --attack)")
	case !*spawn && len(serverArgs) > 0:
		return r.usageError("bench", "--server-arg needs --spawn")
	case !*spawn && *key == "":
		return r.usageError("bench", "--signature-key is needed to sign channels for the server at %s", *base)
	case *subscribers < 1:
		return r.usageError("bench", "invalid --subscribers %d: want 1 or more", *subscribers)
	case *transport != bench.TransportWS && *transport != bench.TransportLP:
		return r.usageError("bench", "invalid --transport %q: want ws or lp", *transport)
	case *mode != bench.ModeFanout && *mode != bench.ModePrivate:
		return r.usageError("bench", "invalid --mode %q: want fanout or private", *mode)
	case *algo != "sha1" && *algo != "sha256":
		return r.usageError("bench", "invalid --signature-algo %q: want sha1 or sha256", *algo)
	case !*idle && *rate <= 0:
		return r.usageError("bench", "invalid --rate %g: want more than 0", *rate)
	case !*idle && *duration <= 0:
		return r.usageError("bench", "invalid --duration %s: want more than 0", *duration)
	case *payload < 0:
		return r.usageError("bench", "invalid --payload %d: want 0 or more", *payload)
	case *publishers < 1:
		return r.usageError("bench", "invalid --publishers %d: want 1 or more", *publishers)
	case *connectRate <= 0:
		return r.usageError("bench", "invalid --connect-rate %g: want more than 0", *connectRate)
	case *storm && (*idle || *transport != bench.TransportWS):
		return r.usageError("bench", "--storm wants WebSocket subscribers and publishes (not --idle, not --transport lp)")
	case *stormWindow <= 0:
		return r.usageError("bench", "invalid --storm-window %s: want more than 0", *stormWindow)
	case *settle < 0 || *drain <= 0 || *dialTimeout <= 0:
		return r.usageError("bench", "--settle, --drain and --dial-timeout want durations above 0")
	}

	// Before spawning, so that the server inherits the raised limit too.
	if _, err := bench.RaiseFileLimit(); err != nil {
		fmt.Fprintf(r.stderr, "pushpull bench: %v\n", err)
	}
	cfg := bench.Config{
		URL:           *base,
		InternalURL:   *internalURL,
		PublishURL:    *publishURL,
		Soak:          *soak,
		SampleEvery:   *sampleEvery,
		Warmup:        *warmup,
		MaxDrift:      *maxDrift,
		SignatureKey:  *key,
		SignatureAlgo: *algo,
		Subscribers:   *subscribers,
		Transport:     *transport,
		Binary:        *binary,
		Mode:          *mode,
		Rate:          *rate,
		Duration:      *duration,
		Payload:       *payload,
		Publishers:    *publishers,
		Idle:          *idle,
		Storm:         *storm,
		StormWindow:   *stormWindow,
		ConnectRate:   *connectRate,
		DialTimeout:   *dialTimeout,
		Settle:        *settle,
		Drain:         *drain,
		Progress:      r.stderr,
	}
	if *spawn && cfg.SignatureKey == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // never fails
		cfg.SignatureKey = hex.EncodeToString(b[:])
	}
	// Refuse what cannot run (too many subscribers for the file limit, …)
	// before starting a server for it.
	if err := cfg.Check(); err != nil {
		return r.failure("bench", err)
	}
	var attackExe string
	if attackKinds != nil && !*attackInProcess {
		var err error
		if attackExe, err = os.Executable(); err != nil {
			return r.failure("bench", fmt.Errorf("find the pushpull executable for the attack process: %w", err))
		}
	}
	var server *bench.Spawned
	if *spawn {
		var err error
		server, err = bench.Spawn(ctx, bench.SpawnOptions{
			SignatureKey:  cfg.SignatureKey,
			SignatureAlgo: cfg.SignatureAlgo,
			ExtraArgs:     serverArgs,
			Floor:         *floor,
			FloorUring:    *floorUring,
		})
		if err != nil {
			return r.failure("bench", err)
		}
		what := "pushpull serve"
		if *floor {
			what = "the floor server"
		}
		fmt.Fprintf(r.stderr, "bench: spawned %s at %s, trusted routes at %s (pid %d)\n", what, server.URL, server.InternalURL, server.PID)
		cfg.URL, cfg.InternalURL, cfg.ServerPID = server.URL, server.InternalURL, server.PID
	}
	if attackKinds != nil {
		ac := bench.AttackConfig{
			Kinds: attackKinds, Workers: *attackWorkers, SlowClients: *slowClients, SlowEvery: *slowEvery,
			Flood: *flood, BodySize: *attackBody, Sources: *attackSources, MaxRSS: *attackMaxRSS << 20, Nice: *attackNice,
		}
		if !*attackInProcess {
			ac.Command = []string{attackExe, "bench", "--attack-only"}
		}
		return r.benchAttack(ctx, cfg, ac, server, *asJSON)
	}
	res, runErr := bench.Run(ctx, cfg)
	if server != nil {
		// The bench has closed its connections: shutdown is quick.
		if err := server.Stop(40 * time.Second); err != nil {
			fmt.Fprintf(r.stderr, "pushpull bench: %v\n", err)
		}
		if res != nil {
			res.ServerLog = server.Log()
		}
	}
	if runErr != nil && res == nil {
		return r.failure("bench", runErr)
	}
	if *asJSON {
		enc := json.NewEncoder(r.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return r.failure("bench", fmt.Errorf("write standard output: %w", err))
		}
	} else {
		writeBenchResult(r.stdout, res, server != nil, *floor)
	}
	if runErr != nil {
		return r.failure("bench", runErr)
	}
	return exitOK
}

// writeBenchResult prints res for people, one figure per line.
func writeBenchResult(w io.Writer, res *bench.Result, spawned, floor bool) {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-13s %s\n", label, fmt.Sprintf(format, args...))
	}
	if res.Idle {
		fmt.Fprintf(&b, "pushpull bench: %s, %d idle subscribers\n", transportName(*res), res.Subscribers)
	} else {
		fmt.Fprintf(&b, "pushpull bench: %s %s, %d subscribers, %g publishes/s for %gs, %d-byte bodies, %d publisher(s)\n",
			transportName(*res), res.Mode, res.Subscribers, res.Rate, res.DurationSec, res.Payload, res.Publishers)
	}
	server := res.URL
	if res.ServerPID != 0 {
		server += fmt.Sprintf(", pid %d", res.ServerPID)
	}
	switch {
	case floor:
		server += " (spawned floor server)"
	case spawned:
		server += " (spawned)"
	}
	line("server", "%s", server)

	c := res.Connect
	counted := ""
	if c.ServerCount >= 0 {
		counted = fmt.Sprintf(" (the server counts %d)", c.ServerCount)
	}
	line("connections", "%d established, %d failed, in %.1f s%s", c.Established, c.Failed, c.Seconds, counted)
	for _, e := range c.Errors {
		line("", "%d× %s", e.Count, e.Error)
	}
	m := res.Memory
	if m.Known {
		line("server RSS", "%s before, %s after connecting (%.0f s settle): %.2f KiB per connection",
			mib(m.RSSBefore), mib(m.RSSAfter), m.SettleSec, m.PerConn/1024)
		line("", "%s at the end, peak %s", mib(m.RSSEnd), mib(m.RSSPeak))
	} else {
		line("server RSS", "unknown: %s", m.Unavailable)
	}
	if !res.Idle && res.Connect.Established > 0 {
		rd := res.Ready
		line("ready", "%d subscribers received the probe in %.1f s, %d did not", rd.Ready, rd.Seconds, rd.Unready)
		if st := res.Storm; st != nil {
			line("storm", "%d dropped, %d missed each; %d reconnected with their mid, %d failed, in %.1f s (window %.1f s); last recovered %.2f s after the first reconnect",
				st.Dropped, st.MissedPerClient, st.Reconnected, st.Failed, st.ReconnectSec, st.WindowSec, st.RecoverSec)
			for _, e := range st.Errors {
				line("", "%d× %s", e.Count, e.Error)
			}
			if st.RSSSteady > 0 {
				line("", "server RSS %s steady, peak %s during the storm: %.2f× steady", mib(st.RSSSteady), mib(st.RSSPeak), st.PeakRatio)
			}
		}
		p := res.Publish
		line("publishes", "%d of %d sent (%.1f/s over %.1f s), %d failed; POST round trip p50 %.2f ms, p99 %.2f ms, max %.2f ms",
			p.Sent, p.Planned, p.Rate, p.Seconds, p.Failed, p.RTT.P50, p.RTT.P99, p.RTT.Max)
		for _, e := range p.Errors {
			line("", "%d× %s", e.Count, e.Error)
		}
		if p.Sent+p.Failed < int64(p.Planned) {
			line("", "the publishers fell behind the rate: each waits for the server's answer; raise --publishers")
		}
		d := res.Deliveries
		line("deliveries", "%d expected, %d received, %d lost, %d duplicated", d.Expected, d.Received, d.Lost, d.Duplicated)
		if d.OutOfOrder+d.Misrouted+d.Foreign+d.Malformed > 0 {
			line("", "%d out of order, %d to the wrong subscriber, %d unknown, %d malformed",
				d.OutOfOrder, d.Misrouted, d.Foreign, d.Malformed)
		}
		line("throughput", "%.0f deliveries/s (first publish to last delivery: %.2f s; drain %.2f s)", d.PerSecond, d.Seconds, d.DrainSec)
		l := res.Latency
		line("latency", "p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms (publish → deliver)", l.P50, l.P90, l.P99, l.Max)
		if res.Soak != nil {
			writeSoak(&b, res)
		}
		if res.ServerCPU.Known {
			line("server CPU", "%s", cpuText(res.ServerCPU))
		} else {
			line("server CPU", "unknown")
		}
		line("bench CPU", "%s", cpuText(res.ClientCPU))
		who := "server nor bench"
		if res.AttackerCPU != nil {
			line("attacker CPU", "%s", cpuText(*res.AttackerCPU))
			who = "server, bench nor attackers"
		}
		if mc := res.MachineCPU; mc.Known {
			line("machine CPU", "%.2f cores busy, %.2f of them neither %s (other processes %.2f); hypervisor steal %.2f",
				mc.Busy, mc.Rest, who, mc.Others, mc.Steal)
			if !mc.Reliable() {
				line("", "other load on the machine: the figures of this run are not reliable")
			}
		}
	}
	for i, e := range res.Disconnects {
		label := ""
		if i == 0 {
			label = "disconnects"
		}
		line(label, "%d× %s", e.Count, e.Error)
	}
	for i, e := range res.ServerLog {
		label := ""
		if i == 0 {
			label = "server log"
		}
		line(label, "%d× %s %s", e.Count, e.Level, e.Message)
	}
	_, _ = io.WriteString(w, b.String())
}

func transportName(res bench.Result) string {
	name := "WebSocket"
	if res.Transport == bench.TransportLP {
		name = "long polling"
	}
	if res.Binary {
		name += " protobuf"
	}
	return name
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func cpuText(c bench.CPUResult) string {
	return fmt.Sprintf("%.2f s (%.2f cores), %.2f µs per delivery", c.Seconds, c.Cores, c.PerDelivery)
}

// serveFloor runs the floor server (bench.ServeFloor) on addr until ctx ends:
// the child process of bench --spawn --floor. Its one informational line,
// at the end, counts its system calls per delivery for the bench's report.
func (r *runner) serveFloor(ctx context.Context, addr string, opt bench.FloorOptions) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return r.failure("bench", fmt.Errorf("floor server: %w", err))
	}
	if err := bench.ServeFloor(ctx, ln, slog.New(slog.NewTextHandler(r.stderr, nil)), opt); err != nil {
		return r.failure("bench", err)
	}
	return exitOK
}
