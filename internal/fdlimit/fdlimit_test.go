//go:build unix

package fdlimit

import "testing"

func TestRaiseReachesTheHardLimit(t *testing.T) {
	l, err := Raise()
	if err != nil {
		t.Fatal(err)
	}
	if l.After < l.Before {
		t.Fatalf("limit lowered: %+v", l)
	}
	cur, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	if cur != l.After {
		t.Fatalf("Current() = %d, Raise said %d", cur, l.After)
	}
	again, err := Raise()
	if err != nil {
		t.Fatal(err)
	}
	if again.Raised() {
		t.Fatalf("second Raise changed the limit again: %+v", again)
	}
}
