package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A soak (Config.Soak) holds the subscribers for the whole Duration while
// publishes trickle at Rate, and samples what the server holds every
// SampleEvery: a leak shows as a figure that keeps growing after the
// warm-up, where a healthy server stays flat.

// Soak defaults.
const (
	DefaultSampleEvery = 10 * time.Second
	// DefaultMaxDrift is the growth in percent, from the warm-up baseline to
	// the end, that a soak tolerates.
	DefaultMaxDrift = 5.0
	// soakEdgeSamples bounds how many samples the baseline and the end are
	// the median of, so that one GC cycle does not decide a verdict.
	soakEdgeSamples = 5
)

// SoakSample is what the server held at one moment of a soak; -1 means
// unknown.
type SoakSample struct {
	// Sec is the time since the publishing began.
	Sec        float64 `json:"t_s"`
	RSS        int64   `json:"rss"`
	FDs        int64   `json:"fds"`
	Threads    int64   `json:"threads"`
	Goroutines int64   `json:"goroutines"`
	// Connections is what /server-stat/ counts for the transport.
	Connections int64 `json:"connections"`
}

// SoakMetric is one figure's drift over a soak.
type SoakMetric struct {
	Name  string `json:"name"`
	Known bool   `json:"known"`
	// Baseline is the median of the first samples after the warm-up, End
	// the median of the last ones, Max the most seen after the warm-up.
	Baseline float64 `json:"baseline"`
	End      float64 `json:"end"`
	Max      float64 `json:"max"`
	// DriftPct is (End − Baseline) / Baseline in percent; Held says whether
	// the growth is within the tolerated percentage, or within a few units
	// for the small counts (threads, goroutines, files). A fall is no leak.
	DriftPct float64 `json:"drift_pct"`
	// Slack is the growth in units that holds whatever the percentage.
	Slack float64 `json:"slack,omitempty"`
	Held  bool    `json:"held"`
}

// SoakResult is a soak's samples and verdict.
type SoakResult struct {
	SampleEverySec float64      `json:"sample_every_s"`
	WarmupSec      float64      `json:"warmup_s"`
	MaxDriftPct    float64      `json:"max_drift_pct"`
	Samples        []SoakSample `json:"samples"`
	Metrics        []SoakMetric `json:"metrics"`
	// Unavailable says why there is no verdict (too few samples, no pid).
	Unavailable string `json:"unavailable,omitempty"`
}

// Held reports whether every known figure stayed within the drift bound.
func (s *SoakResult) Held() bool {
	if s.Unavailable != "" {
		return false
	}
	for _, m := range s.Metrics {
		if m.Known && !m.Held {
			return false
		}
	}
	return true
}

// soakDrift computes the metrics of samples: those taken before warmup are
// left out, the baseline is the median of the first few after it, the end
// the median of the last few.
func soakDrift(samples []SoakSample, warmup time.Duration, maxDrift float64) ([]SoakMetric, error) {
	var post []SoakSample
	for _, s := range samples {
		if s.Sec >= warmup.Seconds() {
			post = append(post, s)
		}
	}
	if len(post) < 2 {
		return nil, fmt.Errorf("%d samples after the %s warm-up: run longer or sample more often", len(post), warmup)
	}
	// An odd count, so that the median is a sample and one outlier among
	// three or five does not move it.
	k := min(max(len(post)/10, 1), soakEdgeSamples)
	if k%2 == 0 {
		k--
	}
	// slack is growth that is no leak whatever the percentage: the runtime
	// starts a thread for a blocking call now and then, the server a
	// goroutine or a file for a timer or a log rotation.
	figures := []struct {
		name  string
		slack float64
		get   func(SoakSample) int64
	}{
		{"rss", 0, func(s SoakSample) int64 { return s.RSS }},
		{"fds", 8, func(s SoakSample) int64 { return s.FDs }},
		{"threads", 4, func(s SoakSample) int64 { return s.Threads }},
		{"goroutines", 16, func(s SoakSample) int64 { return s.Goroutines }},
	}
	out := make([]SoakMetric, 0, len(figures))
	for _, f := range figures {
		m := SoakMetric{Name: f.name, Known: true, Slack: f.slack}
		vals := make([]float64, len(post))
		for i, s := range post {
			v := f.get(s)
			if v < 0 {
				m.Known = false
				break
			}
			vals[i] = float64(v)
			m.Max = max(m.Max, vals[i])
		}
		if !m.Known {
			out = append(out, SoakMetric{Name: f.name})
			continue
		}
		m.Baseline = median(vals[:k])
		m.End = median(vals[len(vals)-k:])
		if m.Baseline > 0 {
			m.DriftPct = (m.End - m.Baseline) / m.Baseline * 100
		}
		m.Held = m.End-m.Baseline <= max(m.Baseline*maxDrift/100, f.slack)
		out = append(out, m)
	}
	return out, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// soakSampler samples the server every SampleEvery until stopped.
type soakSampler struct {
	stop    chan struct{}
	done    sync.WaitGroup
	samples []SoakSample
}

func (r *run) startSoakSampler(ctx context.Context, pid int, start time.Time) *soakSampler {
	s := &soakSampler{stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		t := time.NewTicker(r.cfg.SampleEvery)
		defer t.Stop()
		for {
			sample := r.soakSample(ctx, pid, start)
			s.samples = append(s.samples, sample)
			r.logf("soak %4.0fs: %s RSS, %d fds, %d threads, %s goroutines, %d connections",
				sample.Sec, mibText(sample.RSS), sample.FDs, sample.Threads, unknownIfNegative(sample.Goroutines), sample.Connections)
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops sampling, takes a last sample and returns them all.
func (s *soakSampler) finish(r *run, ctx context.Context, pid int, start time.Time) []SoakSample {
	close(s.stop)
	s.done.Wait()
	return append(s.samples, r.soakSample(ctx, pid, start))
}

func (r *run) soakSample(ctx context.Context, pid int, start time.Time) SoakSample {
	s := SoakSample{Sec: time.Since(start).Seconds(), RSS: -1, FDs: -1, Threads: -1, Goroutines: -1, Connections: -1}
	if rss, _, err := procRSS(pid); err == nil {
		s.RSS = rss
	}
	if n, err := procFDs(pid); err == nil {
		s.FDs = n
	}
	if n, err := procThreads(pid); err == nil {
		s.Threads = n
	}
	if st, err := r.serverStat(ctx); err == nil {
		s.Goroutines = st.goroutines
		s.Connections = st.websockets
		if r.cfg.Transport == TransportLP {
			s.Connections = st.pollings
		}
	}
	return s
}

// procFDs counts the open file descriptors of process pid.
func procFDs(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, fmt.Errorf("count server fds: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("count server fds: %w", err)
	}
	return int64(len(names)), nil
}

// procThreads reads the Threads line of /proc/PID/status.
func procThreads(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read server threads: %w", err)
	}
	return statusCount(data, "Threads:")
}

// statusCount reads a "Name:   1234" line of /proc/PID/status.
func statusCount(data []byte, name string) (int64, error) {
	text := "\n" + string(data)
	i := strings.Index(text, "\n"+name)
	if i < 0 {
		return 0, fmt.Errorf("no %s in /proc status", name)
	}
	line, _, _ := strings.Cut(text[i+1+len(name):], "\n")
	n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed %s line %q in /proc status", name, line)
	}
	return n, nil
}

func unknownIfNegative(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

func mibText(n int64) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func (r *run) soakResult(samples []SoakSample) *SoakResult {
	res := &SoakResult{
		SampleEverySec: r.cfg.SampleEvery.Seconds(),
		WarmupSec:      r.cfg.Warmup.Seconds(),
		MaxDriftPct:    r.cfg.MaxDrift,
		Samples:        samples,
	}
	metrics, err := soakDrift(samples, r.cfg.Warmup, r.cfg.MaxDrift)
	if err != nil {
		res.Unavailable = err.Error()
		return res
	}
	res.Metrics = metrics
	return res
}
