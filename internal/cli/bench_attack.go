package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/bench"
)

// benchAttack runs `pushpull bench --attack`: a quiet run, then one under
// attack, on the same server.
func (r *runner) benchAttack(ctx context.Context, cfg bench.Config, ac bench.AttackConfig, server *bench.Spawned, asJSON bool) int {
	res, runErr := bench.RunAttack(ctx, cfg, ac)
	if server != nil {
		// An attacked server may still be working through what it was sent.
		if err := server.Stop(40 * time.Second); err != nil {
			fmt.Fprintf(r.stderr, "pushpull bench: %v\n", err)
		}
		if res != nil && res.Attacked != nil {
			res.Attacked.ServerLog = server.Log()
		}
	}
	if runErr != nil && res == nil {
		return r.failure("bench", runErr)
	}
	if asJSON {
		enc := json.NewEncoder(r.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return r.failure("bench", fmt.Errorf("write standard output: %w", err))
		}
	} else {
		writeAttackResult(r.stdout, res, server != nil)
	}
	if runErr != nil {
		return r.failure("bench", runErr)
	}
	return exitOK
}

// writeAttackResult prints both runs, then what the attackers did and the
// bounds checked.
func writeAttackResult(w io.Writer, res *bench.AttackResult, spawned bool) {
	if res.Quiet != nil {
		_, _ = io.WriteString(w, "== quiet run ==\n")
		writeBenchResult(w, res.Quiet, spawned, false)
		writeHealth(w, res.QuietHealth)
	}
	if res.Attacked != nil {
		_, _ = io.WriteString(w, "\n== under attack ==\n")
		writeBenchResult(w, res.Attacked, spawned, false)
		writeHealth(w, res.AttackHealth)
	}
	var b strings.Builder
	b.WriteString("\n== attackers ==\n")
	for _, a := range res.Attackers {
		fmt.Fprintf(&b, "%-13s %d clients, %d requests", a.Kind, a.Clients, a.Requests)
		if a.Kind == bench.AttackSlow {
			fmt.Fprintf(&b, " (connections), %d cut by the server", a.Cut)
		}
		b.WriteString("\n")
		for _, o := range a.Outcomes {
			fmt.Fprintf(&b, "%-13s %d× %s\n", "", o.Count, o.Error)
		}
	}
	if res.Stopped != "" {
		fmt.Fprintf(&b, "%-13s stopped early: %s\n", "", res.Stopped)
	}
	if p := res.AttackProcess; p != nil {
		fmt.Fprintf(&b, "%-13s pid %d, nice %d", "process", p.PID, p.Nice)
		if res.Attacked != nil && res.Attacked.AttackerCPU != nil {
			c := res.Attacked.AttackerCPU
			fmt.Fprintf(&b, "; %.2f s of CPU (%.2f cores) over the attacked run", c.Seconds, c.Cores)
		}
		b.WriteString("\n")
	} else {
		fmt.Fprintf(&b, "%-13s the bench's own: their CPU is in the bench CPU above\n", "process")
	}
	fmt.Fprintf(&b, "%-13s idle %s, peak under attack %s (+%s)\n", "server RSS",
		mib(res.RSSIdle), mib(res.RSSPeak), mib(res.RSSPeak-res.RSSIdle))
	if len(res.Checks) > 0 {
		b.WriteString("\n== bounds ==\n")
		writeChecks(&b, res.Checks)
	}
	_, _ = io.WriteString(w, b.String())
}

func writeHealth(w io.Writer, h bench.HealthResult) {
	fmt.Fprintf(w, "%-13s %d asked, %d failed; p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		"/healthz", h.Samples, h.Failed, h.P50, h.P99, h.Max)
}

func writeChecks(b *strings.Builder, checks []bench.Check) {
	for _, c := range checks {
		verdict := "HELD"
		if !c.Held {
			verdict = "NOT HELD"
		}
		fmt.Fprintf(b, "%-8s %s: %s (want %s)\n", verdict, c.Name, c.Got, c.Want)
	}
}

// writeSoak prints a soak's drift, one figure per line.
func writeSoak(b *strings.Builder, res *bench.Result) {
	s := res.Soak
	fmt.Fprintf(b, "%-13s %d samples every %g s; the first %g s are warm-up\n", "soak", len(s.Samples), s.SampleEverySec, s.WarmupSec)
	if s.Unavailable != "" {
		fmt.Fprintf(b, "%-13s no verdict: %s\n", "", s.Unavailable)
		return
	}
	for _, m := range s.Metrics {
		if !m.Known {
			fmt.Fprintf(b, "%-13s %-10s unknown\n", "", m.Name)
			continue
		}
		format := func(v float64) string { return fmt.Sprintf("%.0f", v) }
		if m.Name == "rss" {
			format = func(v float64) string { return mib(int64(v)) }
		}
		fmt.Fprintf(b, "%-13s %-10s %s after warm-up → %s at the end (%+.1f %%), max %s\n",
			"", m.Name, format(m.Baseline), format(m.End), m.DriftPct, format(m.Max))
	}
	writeChecks(b, soakChecks(res))
}

// soakChecks holds a soak to its bounds: every figure within the drift,
// every publish delivered once.
func soakChecks(res *bench.Result) []bench.Check {
	s := res.Soak
	var out []bench.Check
	for _, m := range s.Metrics {
		if m.Known {
			want := fmt.Sprintf("≤ %+.1f %%", s.MaxDriftPct)
			if m.Slack > 0 {
				want += fmt.Sprintf(" or +%.0f", m.Slack)
			}
			out = append(out, bench.Check{
				Name: m.Name + " drift", Want: want,
				Got: fmt.Sprintf("%+.1f %%", m.DriftPct), Held: m.Held,
			})
		}
	}
	d := res.Deliveries
	out = append(out, bench.Check{
		Name: "deliveries lost or duplicated", Want: "0",
		Got:  fmt.Sprintf("%d lost, %d duplicated of %d", d.Lost, d.Duplicated, d.Expected),
		Held: d.Lost == 0 && d.Duplicated == 0 && d.Expected > 0,
	})
	return out
}
