package console

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

func delivery(seq uint64) *hub.Delivery {
	return hub.NewDelivery(&message.Message{ID: message.ID{Epoch: 1, Seq: seq}}, channel.ID{1})
}

// A viewer that does not read keeps the newest tailBuffer messages and
// says how many older ones it dropped; Deliver never blocks.
func TestViewerDropsOldest(t *testing.T) {
	v := newViewer()
	for i := range uint64(tailBuffer + 10) {
		v.Deliver(delivery(i + 1))
	}
	q, dropped := v.take()
	if dropped != 10 || len(q) != tailBuffer || q[0].Msg.ID.Seq != 11 || q[len(q)-1].Msg.ID.Seq != tailBuffer+10 {
		t.Fatalf("dropped %d, kept %d from %d to %d", dropped, len(q), q[0].Msg.ID.Seq, q[len(q)-1].Msg.ID.Seq)
	}
	select {
	case <-v.wake:
	default:
		t.Fatal("no wake-up pending after deliveries")
	}
	if q, dropped := v.take(); len(q) != 0 || dropped != 0 {
		t.Fatalf("after take: %d queued, %d dropped", len(q), dropped)
	}
}

// The ring keeps the newest samples, and the series are per-second rates
// of the counters between them.
func TestSeriesFromRing(t *testing.T) {
	r := newRing(4)
	t0 := time.Unix(1000, 0)
	for i := range 6 {
		r.add(sample{at: t0.Add(time.Duration(i) * time.Second), messages: uint64(i * i), pollings: int64(i)})
	}
	ss := r.all()
	if len(ss) != 4 || ss[0].pollings != 2 || ss[3].pollings != 5 {
		t.Fatalf("ring holds %+v", ss)
	}
	s := buildSeries(ss)
	want := []float64{5, 7, 9} // 9-4, 16-9, 25-16
	if len(s.Messages) != 3 || s.Messages[0] != want[0] || s.Messages[1] != want[1] || s.Messages[2] != want[2] {
		t.Fatalf("messages %v, want %v", s.Messages, want)
	}
	if s.Deliveries != nil {
		t.Fatalf("deliveries %v without a source", s.Deliveries)
	}
	if s.Start != t0.Add(3*time.Second).UnixMilli() || len(s.LongPolling) != 3 || s.LongPolling[2] != 5 {
		t.Fatalf("series %+v", s)
	}
}

// A session cookie is good until its expiry and only as signed.
func TestSessionCookie(t *testing.T) {
	now := time.Unix(5000, 0)
	g := newGuard("operator-token-0123456789", func() time.Time { return now })
	good := g.newSession(now.Add(time.Minute))
	req := func(v string) *http.Request {
		r := httptest.NewRequest("POST", "/console/api/send", nil)
		r.AddCookie(&http.Cookie{Name: cookieName, Value: v})
		return r
	}
	if g.session(req(good)) != good {
		t.Fatal("a fresh session is refused")
	}
	other := newGuard("operator-token-0123456789", func() time.Time { return now })
	if other.session(req(good)) != "" {
		t.Fatal("another process's session is accepted")
	}
	for _, bad := range []string{"", "x", good + "0", "99999999999." + good[len("5060."):], g.newSession(now)} {
		if g.session(req(bad)) != "" {
			t.Errorf("cookie %q is accepted", bad)
		}
	}
	if g.csrf(good) == g.csrf(g.newSession(now.Add(2*time.Minute))) {
		t.Fatal("two sessions share a csrf value")
	}
}

func TestHostAllowed(t *testing.T) {
	names := []string{"push-admin.example.org"}
	for host, want := range map[string]bool{
		"127.0.0.1:8895":                 true,
		"10.1.2.3":                       true,
		"[::1]:8895":                     true,
		"[fe80::1%25eth0]:8895":          true,
		"localhost:8895":                 true,
		"LOCALHOST.":                     true,
		"ops.localhost:8895":             true,
		"push-admin.example.org:8895":    true,
		"Push-Admin.Example.Org.":        true,
		"attacker.example":               false,
		"127.0.0.1.attacker.example":     false,
		"push-admin.example.org.evil.io": false,
		"":                               false,
	} {
		if got := hostAllowed(host, names); got != want {
			t.Errorf("hostAllowed(%q) = %v; want %v", host, got, want)
		}
	}
}
