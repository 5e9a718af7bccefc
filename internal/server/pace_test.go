package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/testkit"
)

func TestPacerSpacesOutOneAddress(t *testing.T) {
	now := time.Unix(1000, 0)
	p := newPacer(2, func() time.Time { return now })
	from := func(addr string) *http.Request { return &http.Request{RemoteAddr: addr} }
	reserve := func(addr string) (time.Duration, bool) { return p.reserve(from(addr), time.Second) }

	for i := range 4 { // twice the rate at once
		if wait, ok := reserve("192.0.2.1:1000"); wait != 0 || !ok {
			t.Fatalf("request %d within the burst: wait %v, %v", i, wait, ok)
		}
	}
	for i, want := range []time.Duration{500 * time.Millisecond, time.Second} {
		if wait, ok := reserve("192.0.2.1:1001"); wait != want || !ok {
			t.Fatalf("request %d past the burst: wait %v, %v; want %v", i, wait, ok, want)
		}
	}
	// The next turn is 1.5 s away, past the most a request may wait: it
	// is refused, and does not take the turn.
	for range 2 {
		if wait, ok := reserve("192.0.2.1:1002"); ok || wait != 1500*time.Millisecond {
			t.Fatalf("a request 1.5 s behind: wait %v, %v; want refused", wait, ok)
		}
	}
	// Other addresses, and other IPv6 /64s, have turns of their own; one
	// /64 is one client.
	if wait, ok := reserve("198.51.100.1:1000"); wait != 0 || !ok {
		t.Fatalf("another address waits %v, %v", wait, ok)
	}
	for range 4 {
		reserve("[2001:db8:1:2::1]:1000")
	}
	if wait, _ := reserve("[2001:db8:1:2::ffff]:1000"); wait == 0 {
		t.Fatal("another host of the same /64 is not paced with it")
	}
	if wait, ok := reserve("[2001:db8:1:3::1]:1000"); wait != 0 || !ok {
		t.Fatalf("another /64 waits %v, %v", wait, ok)
	}
	// Time refills the budget.
	now = now.Add(3 * time.Second)
	if wait, ok := reserve("192.0.2.1:1003"); wait != 0 || !ok {
		t.Fatalf("after 3 s: wait %v, %v", wait, ok)
	}
	// An address the pacer cannot read is not paced, and no pacer paces
	// nothing.
	if wait, ok := reserve("@unix"); wait != 0 || !ok {
		t.Fatalf("an unreadable address: wait %v, %v", wait, ok)
	}
	var none *pacer
	if wait, ok := none.reserve(from("192.0.2.1:1"), time.Second); wait != 0 || !ok {
		t.Fatalf("no pacer: wait %v, %v", wait, ok)
	}
}

// A client that sends large requests back to back is served at its pace:
// a request ahead of it waits its turn, one too far ahead is held as long as
// a request waiting for a slot would be and then refused, so refusing it
// invites no faster retry. Small requests are not paced.
func TestAdmissionPacesLargeRequests(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAdmission(4, 1, time.Second, testkit.Logger())
	a.pace = newPacer(1, func() time.Time { return now })
	var slept []time.Duration
	a.sleep = func(_ context.Context, d time.Duration) bool {
		slept = append(slept, d)
		now = now.Add(d)
		return true
	}
	served := 0
	h := a.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		w.WriteHeader(http.StatusNoContent)
	}))
	send := func(size int) int {
		r := httptest.NewRequest("POST", "/rest/pull.echo", strings.NewReader(strings.Repeat("x", size)))
		r.RemoteAddr = "192.0.2.7:5000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	const large = 100 << 10
	for i, want := range []struct {
		code  int
		slept []time.Duration
	}{
		{http.StatusNoContent, nil},
		{http.StatusNoContent, nil},
		{http.StatusNoContent, []time.Duration{time.Second}},
	} {
		slept = nil
		if code := send(large); code != want.code || len(slept) != len(want.slept) || (len(slept) > 0 && slept[0] != want.slept[0]) {
			t.Fatalf("large request %d: %d after sleeping %v; want %d after %v", i, code, slept, want.code, want.slept)
		}
	}
	// Its next turn would be a second away, plus one taken: refused after
	// the admission's wait.
	slept = nil
	a.pace.reserve(&http.Request{RemoteAddr: "192.0.2.7:5001"}, time.Second) // takes the next turn
	if code := send(large); code != http.StatusServiceUnavailable || len(slept) != 1 || slept[0] != time.Second {
		t.Fatalf("a request too far ahead: %d after sleeping %v; want 503 after 1s", code, slept)
	}
	slept = nil
	for range 10 {
		if code := send(1 << 10); code != http.StatusNoContent {
			t.Fatalf("a small request: %d", code)
		}
	}
	if len(slept) != 0 || served != 13 {
		t.Fatalf("small requests slept %v; %d served in all, want 13", slept, served)
	}
}

// Many addresses, each within its own pace, still keep to the pace of all
// addresses together.
func TestAdmissionPacesAllAddressesTogether(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAdmission(4, 1, time.Second, testkit.Logger())
	a.pace = newPacer(100, func() time.Time { return now })
	a.paceAll = newPacer(1, func() time.Time { return now })
	var slept []time.Duration
	a.sleep = func(_ context.Context, d time.Duration) bool {
		slept = append(slept, d)
		now = now.Add(d)
		return true
	}
	h := a.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for i, want := range []time.Duration{0, 0, time.Second} {
		slept = nil
		r := httptest.NewRequest("POST", "/pubweb/", strings.NewReader(strings.Repeat("x", 100<<10)))
		r.RemoteAddr = "192.0.2." + string(rune('1'+i)) + ":5000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var got time.Duration
		for _, d := range slept {
			got += d
		}
		if w.Code != http.StatusNoContent || got != want {
			t.Fatalf("request %d from its own address: %d after waiting %v; want 204 after %v", i, w.Code, got, want)
		}
	}
}
