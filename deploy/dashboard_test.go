package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/metrics"
)

const dashboardFile = "grafana-dashboard.json"

// dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// metricName finds the metric names in a PromQL expression: the families
// this server exports start with one of these prefixes.
var metricName = regexp.MustCompile(`\b(?:pushpull|go|process)_[a-zA-Z0-9_]+`)

// TestDashboardNamesExistingMetrics: the dashboard is valid JSON, every
// expression names only families the server exports (a histogram's
// _bucket, _sum and _count series included), and every pushpull family
// has a panel.
func TestDashboardNamesExistingMetrics(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s has no title, uid or panels", dashboardFile)
	}

	known := map[string]bool{}
	for _, n := range metrics.FamilyNames() {
		known[n] = true
	}
	// The Go and process collectors' names, from a real registry.
	fams, err := metrics.New(metrics.Sources{}).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		known[f.GetName()] = true
	}
	exists := func(name string) bool {
		if known[name] {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && known[base] {
				return true
			}
		}
		return false
	}

	var exprs []string
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	used := map[string]bool{}
	for _, e := range exprs {
		names := metricName.FindAllString(e, -1)
		if len(names) == 0 && e != "" {
			t.Errorf("expression %q names no metric", e)
		}
		for _, n := range names {
			if !exists(n) {
				t.Errorf("expression %q names %s, which the server does not export", e, n)
			}
			used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
		}
	}
	for _, n := range metrics.FamilyNames() {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
	if !slices.Contains(metrics.FamilyNames(), "pushpull_connections") {
		t.Error("metrics.FamilyNames lacks pushpull_connections: the check above checks nothing")
	}
}
