package bench

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// samples makes one sample a second with the given RSS, fds, threads and
// goroutines.
func samples(rss, fds, threads, goroutines []int64) []SoakSample {
	out := make([]SoakSample, len(rss))
	for i := range rss {
		out[i] = SoakSample{Sec: float64(i), RSS: rss[i], FDs: fds[i], Threads: threads[i], Goroutines: goroutines[i]}
	}
	return out
}

func repeat(v int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func metric(t *testing.T, ms []SoakMetric, name string) SoakMetric {
	t.Helper()
	for _, m := range ms {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no metric %q in %+v", name, ms)
	return SoakMetric{}
}

func TestSoakDriftFlat(t *testing.T) {
	// A big warm-up before 3 s is left out; one spike among the last samples
	// does not move the median end.
	// 30 samples after the warm-up: the end is the median of the last 3.
	rss := append([]int64{10, 50, 90}, repeat(100, 30)...)
	rss[len(rss)-1] = 300
	n := len(rss)
	ms, err := soakDrift(samples(rss, repeat(1000, n), repeat(9, n), repeat(-1, n)), 3*time.Second, 5)
	if err != nil {
		t.Fatal(err)
	}
	m := metric(t, ms, "rss")
	if !m.Known || !m.Held || m.Baseline != 100 || m.End != 100 || m.DriftPct != 0 || m.Max != 300 {
		t.Errorf("rss %+v, want flat at 100, max 300, held", m)
	}
	if g := metric(t, ms, "goroutines"); g.Known || g.Held {
		t.Errorf("goroutines %+v, want unknown", g)
	}
	res := SoakResult{Metrics: ms}
	if !res.Held() {
		t.Errorf("Held() = false for %+v", ms)
	}
}

func TestSoakDriftGrowth(t *testing.T) {
	const n = 20
	rss := make([]int64, n)
	fds := make([]int64, n)
	for i := range rss {
		rss[i] = 1000 + int64(i)*10 // +190 over 1,000: 19 % without warm-up
		fds[i] = 200 + int64(i)     // a file a second
	}
	ms, err := soakDrift(samples(rss, fds, repeat(9, n), repeat(500, n)), 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	// 20 samples: the baseline and end are single samples (20/10 = 2, odd: 1).
	m := metric(t, ms, "rss")
	if m.Held || m.Baseline != 1000 || m.End != 1190 || math.Abs(m.DriftPct-19) > 1e-9 {
		t.Errorf("rss %+v, want 1000 → 1190 (+19 %%), not held", m)
	}
	if f := metric(t, ms, "fds"); f.Held || f.Baseline != 200 || f.End != 219 {
		t.Errorf("fds %+v, want 200 → 219, not held", f)
	}
	if g := metric(t, ms, "goroutines"); !g.Known || !g.Held || g.DriftPct != 0 {
		t.Errorf("goroutines %+v, want flat and held", g)
	}
	res := SoakResult{Metrics: ms}
	if res.Held() {
		t.Error("Held() = true with a growing RSS")
	}
}

func TestSoakDriftSlack(t *testing.T) {
	// Small counts may move by a few units: 9 → 12 threads is +33 % but no
	// leak; 9 → 14 is more than the slack.
	threads := []int64{9, 9, 9, 12}
	ms, err := soakDrift(samples(repeat(1000, 4), repeat(50, 4), threads, repeat(20, 4)), 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	if m := metric(t, ms, "threads"); !m.Held || m.End != 12 {
		t.Errorf("threads %+v, want held within the slack", m)
	}
	threads[3] = 14
	ms, _ = soakDrift(samples(repeat(1000, 4), repeat(50, 4), threads, repeat(20, 4)), 0, 5)
	if m := metric(t, ms, "threads"); m.Held {
		t.Errorf("threads %+v, want not held", m)
	}
	// A fall is no leak.
	ms, _ = soakDrift(samples([]int64{1000, 1000, 1000, 500}, repeat(50, 4), repeat(9, 4), repeat(20, 4)), 0, 5)
	if m := metric(t, ms, "rss"); !m.Held || m.DriftPct != -50 {
		t.Errorf("rss %+v, want -50 %% and held", m)
	}
}

func TestSoakDriftTooFewSamples(t *testing.T) {
	s := samples([]int64{1, 2, 3}, []int64{1, 2, 3}, []int64{1, 2, 3}, []int64{1, 2, 3})
	if _, err := soakDrift(s, 2*time.Second, 5); err == nil || !strings.Contains(err.Error(), "1 samples after the 2s warm-up") {
		t.Errorf("err %v, want too few samples", err)
	}
	res := SoakResult{Unavailable: "too few"}
	if res.Held() {
		t.Error("Held() = true without a verdict")
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %g, want %g", tt.in, got, tt.want)
		}
	}
}

func TestStatusCount(t *testing.T) {
	status := []byte("Name:\tpushpull\nUmask:\t0022\nThreads:\t12\nVmRSS:\t  1000 kB\n")
	if n, err := statusCount(status, "Threads:"); err != nil || n != 12 {
		t.Errorf("Threads = %d, %v; want 12", n, err)
	}
	if _, err := statusCount(status, "Missing:"); err == nil {
		t.Error("no error for a missing line")
	}
	if _, err := statusCount([]byte("Threads:\tmany\n"), "Threads:"); err == nil {
		t.Error("no error for a malformed line")
	}
	// The first line counts too.
	if n, err := statusCount([]byte("Threads: 3"), "Threads:"); err != nil || n != 3 {
		t.Errorf("first line: %d, %v", n, err)
	}
}

func TestProcFDsAndThreads(t *testing.T) {
	before, err := procFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	after, err := procFDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before < 3 || after < before+1 {
		t.Errorf("fds %d before opening a file, %d after", before, after)
	}
	if n, err := procThreads(os.Getpid()); err != nil || n < 1 {
		t.Errorf("threads %d, %v", n, err)
	}
	if _, err := procFDs(-1); err == nil {
		t.Error("no error for a missing process")
	}
}

func TestParseStat(t *testing.T) {
	st, err := parseStat([]byte(`[{"pid":42,"websockets":7,"pollings":2,"channels":1}]`))
	if err != nil || st.pid != 42 || st.websockets != 7 || st.pollings != 2 || st.goroutines != -1 {
		t.Errorf("without goroutines: %+v, %v", st, err)
	}
	st, err = parseStat([]byte(`[{"pid":1,"websockets":1,"goroutines":30},{"pid":2,"websockets":2,"goroutines":0}]`))
	if err != nil || st.pid != 0 || st.websockets != 3 || st.goroutines != 30 {
		t.Errorf("two processes: %+v, %v", st, err)
	}
	if _, err := parseStat([]byte(`{"pid":1}`)); err == nil {
		t.Error("no error for an object")
	}
}

func TestSoakConfig(t *testing.T) {
	cfg := Config{URL: "http://127.0.0.1:1", SignatureKey: "k", Subscribers: 1, Rate: 1, Duration: 10 * time.Second,
		Soak: true, SampleEvery: 5 * time.Second}
	if err := cfg.Check(); err == nil || !strings.Contains(err.Error(), "too few samples") {
		t.Errorf("err %v, want too few samples", err)
	}
	cfg.SampleEvery = time.Second
	if err := cfg.Check(); err != nil {
		t.Errorf("err %v", err)
	}
	cfg.Idle = true
	if err := cfg.Check(); err == nil {
		t.Error("no error for an idle soak")
	}
}

func TestSoakRun(t *testing.T) {
	cfg := testConfig(startServer(t))
	cfg.Soak = true
	cfg.Rate = 10
	cfg.Duration = 1500 * time.Millisecond
	cfg.SampleEvery = 200 * time.Millisecond
	cfg.Warmup = 300 * time.Millisecond
	res, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, res, int64(cfg.Subscribers))
	s := res.Soak
	if s == nil || len(s.Samples) < 3 || s.Unavailable != "" || s.WarmupSec != 0.3 || s.SampleEverySec != 0.2 || s.MaxDriftPct != DefaultMaxDrift {
		t.Fatalf("soak %+v", s)
	}
	for _, smp := range s.Samples {
		// The server runs in this process: its connections are ours.
		if smp.RSS <= 0 || smp.FDs < int64(cfg.Subscribers) || smp.Threads < 1 || smp.Connections != int64(cfg.Subscribers) {
			t.Errorf("sample %+v", smp)
		}
	}
	for _, name := range []string{"rss", "fds", "threads"} {
		if m := metric(t, s.Metrics, name); !m.Known || m.Baseline <= 0 {
			t.Errorf("%s: %+v", name, m)
		}
	}
}
