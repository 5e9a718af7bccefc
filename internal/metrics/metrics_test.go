package metrics

import (
	"strings"
	"testing"
)

// TestEveryFamilyIsDescribed: the names the dashboard test checks against
// are the descriptors the collector registers, one for one.
func TestEveryFamilyIsDescribed(t *testing.T) {
	c := newCollector(Sources{})
	if len(c.names) != len(c.descs()) {
		t.Fatalf("%d names, %d descriptors", len(c.names), len(c.descs()))
	}
	for i, d := range c.descs() {
		if !strings.Contains(d.String(), `"`+c.names[i]+`"`) {
			t.Errorf("descriptor %d is %s, name %s", i, d, c.names[i])
		}
	}
}

// TestMissingPartsAreLeftOut: a server part that is absent (the cluster
// in embedded mode) exports nothing rather than zeros that would read as
// "unhealthy"; the runtime collectors are always there.
func TestMissingPartsAreLeftOut(t *testing.T) {
	fams, err := New(Sources{}).Gather()
	if err != nil {
		t.Fatal(err)
	}
	var goSeen bool
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "pushpull_") {
			t.Errorf("%s exported with no part to read", f.GetName())
		}
		goSeen = goSeen || f.GetName() == "go_goroutines"
	}
	if !goSeen {
		t.Error("no go_goroutines: the Go collector is missing")
	}
}
