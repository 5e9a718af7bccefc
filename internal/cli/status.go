package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/server"
)

const statusHelpAbout = `Prints the running server's state: its build, uptime and readiness, the
connections and channels it holds, request rates, memory, the cluster's
nodes (with --redis) and its TLS certificates. It reads the server's trusted
listener (` + server.StatusPath + `), at the address the server recorded in its data dir
when it started, else the one the configuration gives (--internal-addr).
The data dir and config file are found as for serve (flags, PUSHPULL_*).
When the trusted listener serves TLS, status trusts exactly the certificate
the configuration names for it.

Rates are requests per second by route over --interval, from two readings.`

const statusExamples = `  pushpull status
  pushpull status --json | jq .websockets
  pushpull status --data-dir /var/lib/pushpull --interval 5s
  pushpull status --url http://10.0.1.11:8895 --interval 0
`

// maxStatusBody bounds the status answer read; a cluster of many nodes is
// still a few KiB.
const maxStatusBody = 1 << 20

// statusReport is what status prints with --json: the server's Status, the
// URL it came from and, with --interval, the rates.
type statusReport struct {
	URL string `json:"url"`
	server.Status
	Rates *statusRates `json:"rates,omitempty"`
}

// statusRates are requests per second by route between two readings.
type statusRates struct {
	Seconds         float64 `json:"seconds"`
	WebSockets      float64 `json:"websockets"`
	LongPolls       float64 `json:"long_polls"`
	Publishes       float64 `json:"publishes"`
	ClientPublishes float64 `json:"client_publishes"`
}

func (r *runner) status(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.String("data-dir", "", "the server's data `DIR`, where it records its trusted listener's address (env PUSHPULL_DATA_DIR; default ./data)")
	fs.String(config.ConfigFlag, "", "the server's JSON config `FILE` (env PUSHPULL_CONFIG)")
	url := fs.String("url", "", "the trusted listener's base `URL` (default: as recorded in the data dir)")
	interval := fs.Duration("interval", time.Second, "time between the two readings rates are computed from; 0: one reading, no rates")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for each answer")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	writeHelp := helpWriter(fs, "pushpull status [flags]", statusHelpAbout, statusExamples)
	if code, ok := r.parseFlags(fs, writeHelp, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return r.usageError("status", "takes no arguments, got %q", fs.Arg(0))
	}
	if *interval < 0 || *timeout <= 0 {
		return r.usageError("status", "--interval must be 0 or more and --timeout more than 0")
	}
	cfg, err := loadLocation(fs, r.getenv, r.readFile)
	if err != nil {
		return r.usageError("status", "%v", err)
	}
	base := strings.TrimRight(*url, "/")
	if base == "" {
		if base, err = server.InternalURL(cfg); err != nil {
			return r.failure("status", err)
		}
	}
	client, err := r.statusClient(cfg, *timeout)
	if err != nil {
		return r.failure("status", err)
	}

	first, err := fetchStatus(ctx, client, base)
	if err != nil {
		return r.failure("status", err)
	}
	report := statusReport{URL: base, Status: first}
	if *interval > 0 {
		began := time.Now()
		select {
		case <-ctx.Done():
			return r.failure("status", ctx.Err())
		case <-time.After(*interval):
		}
		second, err := fetchStatus(ctx, client, base)
		if err != nil {
			return r.failure("status", err)
		}
		report.Status = second
		report.Rates = rates(first, second, time.Since(began))
	}
	if err := r.emit(*asJSON, report, func(w io.Writer) { writeStatus(w, report, time.Now()) }); err != nil {
		return r.failure("status", err)
	}
	return exitOK
}

// loadLocation loads the server's configuration as serve would, from the
// --data-dir and --config flags given to fs (as given: Visit), the
// environment and the config file: where the server keeps its data and
// listens.
func loadLocation(fs *flag.FlagSet, getenv func(string) string, readFile func(string) ([]byte, error)) (config.Config, error) {
	var args []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "data-dir" || f.Name == config.ConfigFlag {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	return config.Load(args, getenv, readFile)
}

// statusClient is the HTTP client status and healthcheck ask with. When the trusted
// listener serves TLS with a certificate file of the configuration, that
// certificate is the one trusted, pinned: the server is asked at a loopback
// address its certificate does not name, and the file is what the server
// itself serves.
func (r *runner) statusClient(cfg config.Config, timeout time.Duration) (*http.Client, error) {
	client := &http.Client{Timeout: timeout}
	file := server.InternalCertFile(cfg)
	if file == "" {
		if r.httpClient.Transport != nil {
			client.Transport = r.httpClient.Transport
		}
		return client, nil
	}
	data, err := r.readFile(file)
	if err != nil {
		return nil, fmt.Errorf("the trusted listener's certificate: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("the trusted listener's certificate %s: no PEM certificate", file)
	}
	pinned, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the trusted listener's certificate %s: %w", file, err)
	}
	client.Transport = &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is the pin below, not a chain to a root with a name
		// (see the doc comment).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !cs.PeerCertificates[0].Equal(pinned) {
				return fmt.Errorf("the server's certificate is not %s (renewed without SIGHUP?)", file)
			}
			return nil
		},
	}}
	return client, nil
}

// fetchStatus reads one Status from the server at base.
func fetchStatus(ctx context.Context, client *http.Client, base string) (server.Status, error) {
	u := base + server.StatusPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return server.Status{}, fmt.Errorf("GET %s: %w", u, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		var op interface{ Timeout() bool }
		if errors.As(err, &op) && op.Timeout() {
			return server.Status{}, fmt.Errorf("GET %s: no answer in time: is the server busy or is this not its trusted listener?", u)
		}
		return server.Status{}, fmt.Errorf("%w (is the server running? is this its trusted listener? see --url)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBody))
	if err != nil {
		return server.Status{}, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return server.Status{}, fmt.Errorf("GET %s: %s (a server older than this command, or not pushpull's trusted listener?)", u, resp.Status)
	}
	var st server.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return server.Status{}, fmt.Errorf("GET %s: not a status: %w", u, err)
	}
	return st, nil
}

// rates turns two readings of the daily counters, elapsed apart, into
// requests per second. Across midnight UTC the counters start over, and the
// second reading alone is what happened since.
func rates(a, b server.Status, elapsed time.Duration) *statusRates {
	secs := elapsed.Seconds()
	if secs <= 0 {
		return nil
	}
	prev := a.Today
	if prev.Date != b.Today.Date {
		prev = b.Today
		prev.WebSockets, prev.Pollings, prev.Publishes, prev.ClientPublishes = 0, 0, 0, 0
	}
	per := func(before, after int64) float64 { return float64(max(after-before, 0)) / secs }
	return &statusRates{
		Seconds:         secs,
		WebSockets:      per(prev.WebSockets, b.Today.WebSockets),
		LongPolls:       per(prev.Pollings, b.Today.Pollings),
		Publishes:       per(prev.Publishes, b.Today.Publishes),
		ClientPublishes: per(prev.ClientPublishes, b.Today.ClientPublishes),
	}
}

// writeStatus prints a report for people, one topic a line.
func writeStatus(w io.Writer, rep statusReport, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	st := rep.Status
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY: " + st.NotReady
	}
	fmt.Fprintf(tw, "server\t%s\t%s\n", rep.URL, ready)
	fmt.Fprintf(tw, "build\t%s\n", st.Build)
	fmt.Fprintf(tw, "started\t%s\tup %s\n", st.Started.UTC().Format(time.RFC3339), (time.Duration(st.Uptime) * time.Second).String())
	fmt.Fprintf(tw, "connections\t%d websockets, %d long polls\ton %d channels\n", st.WebSockets, st.LongPolls, st.Channels)
	if rt := rep.Rates; rt != nil {
		fmt.Fprintf(tw, "rates\t%.1f publishes/s, %.1f client publishes/s\t%.1f websockets/s, %.1f long polls/s opened (over %.1fs)\n",
			rt.Publishes, rt.ClientPublishes, rt.WebSockets, rt.LongPolls, rt.Seconds)
	}
	d := st.Today
	fmt.Fprintf(tw, "today\t%d publishes, %d client publishes\t%d websockets, %d long polls opened (%s UTC)\n",
		d.Publishes, d.ClientPublishes, d.WebSockets, d.Pollings, d.Date)
	fmt.Fprintf(tw, "memory\theap %s, from the system %s\t%d goroutines\n", mebibytes(st.HeapBytes), mebibytes(st.SysBytes), st.Goroutines)
	if c := st.Cluster; c != nil {
		fmt.Fprintf(tw, "cluster\t%s prefix %s\tthis node %s\n", c.Redis, c.Prefix, c.Node)
		if c.Error != "" {
			fmt.Fprintf(tw, "\tnodes unknown: %s\n", c.Error)
		}
		for _, n := range c.Nodes {
			state := "alive"
			if !n.Alive {
				state = "SILENT"
			}
			self := ""
			if n.Self {
				self = " (this node)"
			}
			fmt.Fprintf(tw, "  node\t%s %s%s\tlast heartbeat %s ago\n", n.ID, state, self, now.Sub(n.LastHeartbeat).Round(time.Second))
		}
	}
	for _, c := range st.TLS {
		fmt.Fprintf(tw, "tls %s\t%s serial %s\texpires %s (in %s)\n", c.Listener, c.Subject, c.Serial,
			c.NotAfter.UTC().Format(time.RFC3339), c.NotAfter.Sub(now).Round(time.Hour))
	}
	_ = tw.Flush()
}

func mebibytes(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
