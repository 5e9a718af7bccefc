package push_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/push"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/store/sqlite"
)

var created = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path, "push.example.com")
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	// Registered before run's cleanup, so it runs after the worker stopped.
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

// hook is a webhook endpoint that answers the status codes in fail first,
// then 200, and reports each request it got.
type hook struct {
	mu       sync.Mutex
	fail     []int
	requests []request
	got      chan struct{}
}

type request struct {
	method, contentType, idempotencyKey string
	body                                []byte
}

func newHook(t *testing.T, fail ...int) (*hook, *httptest.Server) {
	h := &hook{fail: fail, got: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.requests = append(h.requests, request{r.Method, r.Header.Get("Content-Type"), r.Header.Get("Idempotency-Key"), body})
		status := http.StatusOK
		if len(h.fail) > 0 {
			status, h.fail = h.fail[0], h.fail[1:]
		}
		h.mu.Unlock()
		w.WriteHeader(status)
		h.got <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *hook) wait(t *testing.T, n int) []request {
	t.Helper()
	for range n {
		select {
		case <-h.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("webhook: timed out waiting for %d requests", n)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]request(nil), h.requests...)
}

// watchedStore reports the worker's progress, so that a test can wait for
// the event it means instead of sleeping: each time the worker finds no job
// due ("idle"), and each job it completes or reschedules.
type watchedStore struct {
	store.Store
	mu     sync.Mutex
	events []string
	change chan struct{}
}

func watch(st store.Store) *watchedStore {
	return &watchedStore{Store: st, change: make(chan struct{}, 1)}
}

func (s *watchedStore) note(e string) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
	select {
	case s.change <- struct{}{}:
	default:
	}
}

func (s *watchedStore) ClaimPush(ctx context.Context, now time.Time, lease time.Duration) (store.PushJob, error) {
	j, err := s.Store.ClaimPush(ctx, now, lease)
	if errors.Is(err, store.ErrNotFound) {
		s.note("idle")
	}
	return j, err
}

func (s *watchedStore) CompletePush(ctx context.Context, id int64) error {
	err := s.Store.CompletePush(ctx, id)
	s.note("complete")
	return err
}

func (s *watchedStore) RetryPush(ctx context.Context, id int64, next time.Time) error {
	err := s.Store.RetryPush(ctx, id, next)
	s.note("retry")
	return err
}

// waitIdle waits until the worker has found nothing due n times after the
// last completed or rescheduled job: everything it was going to send by
// then has been sent.
func (s *watchedStore) waitIdle(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		idle := 0
		for i := len(s.events) - 1; i >= 0 && s.events[i] == "idle"; i-- {
			idle++
		}
		settled := idle >= n && len(s.events) > idle // a job was settled before
		s.mu.Unlock()
		if settled {
			return
		}
		select {
		case <-s.change:
		case <-deadline:
			t.Fatalf("push worker: not idle %d times after a settled job within 10 s (events %v)", n, s.snapshot())
		}
	}
}

func (s *watchedStore) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

// run starts q.Run and stops it (waiting) at cleanup.
func run(t *testing.T, q *push.Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func noBackoff(int) time.Duration { return 0 }

func notification() push.Notification {
	return push.Notification{UserIDs: []int64{1, 7}, Text: "hello", ClientID: "local.abc.123",
		SenderName: "App", AvatarURL: "https://example.com/a.png", Created: created}
}

func pending(t *testing.T, st store.Store) bool {
	t.Helper()
	_, err := st.ClaimPush(t.Context(), time.Now().Add(time.Hour), 0)
	return err == nil
}

func TestWebhookDelivers(t *testing.T) {
	h, srv := newHook(t)
	st := openStore(t, filepath.Join(t.TempDir(), "registry.db"))
	ws := watch(st)
	// A long tick: delivery must come from Send waking the worker.
	q := push.New(ws, push.Options{Sender: push.WebhookSender{URL: srv.URL, Client: srv.Client()}, Tick: time.Hour})
	run(t, q)
	if err := q.Send(t.Context(), notification()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	reqs := h.wait(t, 1)
	r := reqs[0]
	if r.method != http.MethodPost || r.contentType != "application/json" {
		t.Errorf("request = %s %q, want POST application/json", r.method, r.contentType)
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if id, _ := got["id"].(string); !hexID.MatchString(id) || r.idempotencyKey != id {
		t.Errorf("id %q, Idempotency-Key %q: want the same 32 hex characters", got["id"], r.idempotencyKey)
	}
	delete(got, "id")
	want := `{"avatar_url":"https://example.com/a.png","client_id":"local.abc.123","created":"2025-01-02T03:04:05Z","sender_name":"App","text":"hello","user_ids":[1,7]}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Errorf("body = %s, want %s", b, want)
	}
	ws.waitIdle(t, 1)
	if n := len(h.wait(t, 0)); n != 1 {
		t.Errorf("webhook got %d requests, want 1", n)
	}
	if pending(t, st) {
		t.Error("job still queued after delivery")
	}
}

func TestWebhookRetries(t *testing.T) {
	h, srv := newHook(t, http.StatusInternalServerError, http.StatusBadGateway)
	st := openStore(t, filepath.Join(t.TempDir(), "registry.db"))
	ws := watch(st)
	var delays []int
	var mu sync.Mutex
	q := push.New(ws, push.Options{
		Sender: push.WebhookSender{URL: srv.URL, Client: srv.Client()},
		Backoff: func(attempt int) time.Duration {
			mu.Lock()
			delays = append(delays, attempt)
			mu.Unlock()
			return 0
		},
		Tick: time.Hour,
	})
	run(t, q)
	if err := q.Send(t.Context(), notification()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	reqs := h.wait(t, 3)
	ws.waitIdle(t, 1)
	if n := len(h.wait(t, 0)); n != 3 {
		t.Errorf("webhook got %d requests, want 3", n)
	}
	for i, r := range reqs {
		if string(r.body) != string(reqs[0].body) {
			t.Errorf("attempt %d body %s differs from first %s", i+1, r.body, reqs[0].body)
		}
		// The id a receiver deduplicates on is the same on every attempt.
		if !hexID.MatchString(r.idempotencyKey) || r.idempotencyKey != reqs[0].idempotencyKey {
			t.Errorf("attempt %d Idempotency-Key %q, first %q", i+1, r.idempotencyKey, reqs[0].idempotencyKey)
		}
	}
	mu.Lock()
	if len(delays) != 2 || delays[0] != 1 || delays[1] != 2 {
		t.Errorf("backoff asked for attempts %v, want [1 2]", delays)
	}
	mu.Unlock()
	if pending(t, st) {
		t.Error("job still queued after delivery")
	}
	if s := q.Stats(); s != (push.Stats{Attempts: 3, Failures: 2}) {
		t.Errorf("stats %+v, want 3 attempts, 2 failures, nothing dropped", s)
	}
	if n, err := q.Len(t.Context()); n != 0 || err != nil {
		t.Errorf("Len = %d, %v after delivery", n, err)
	}
}

// fakeClock is a settable clock.
type fakeClock struct{ now atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.now.Add(int64(d)) }

func TestRetryWaitsForBackoff(t *testing.T) {
	h, srv := newHook(t, http.StatusServiceUnavailable)
	st := openStore(t, filepath.Join(t.TempDir(), "registry.db"))
	ws := watch(st)
	var clock fakeClock
	clock.now.Store(created.UnixNano())
	q := push.New(ws, push.Options{Sender: push.WebhookSender{URL: srv.URL, Client: srv.Client()},
		Now: clock.Now, Tick: 5 * time.Millisecond})
	run(t, q)
	if err := q.Send(t.Context(), notification()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	h.wait(t, 1)
	ws.waitIdle(t, 3) // several ticks found nothing due: the clock has not moved
	if n, err := q.Len(t.Context()); n != 1 || err != nil {
		t.Errorf("Len = %d, %v while the job waits for its retry; want 1", n, err)
	}
	if n := len(h.wait(t, 0)); n != 1 {
		t.Fatalf("webhook got %d requests before the backoff elapsed, want 1", n)
	}
	clock.Advance(time.Second) // the first backoff
	h.wait(t, 1)
}

func TestDropAfterMaxAttempts(t *testing.T) {
	h, srv := newHook(t, 500, 500, 500, 500, 500)
	st := openStore(t, filepath.Join(t.TempDir(), "registry.db"))
	ws := watch(st)
	q := push.New(ws, push.Options{Sender: push.WebhookSender{URL: srv.URL, Client: srv.Client()},
		Backoff: noBackoff, MaxAttempts: 3, Tick: time.Hour})
	run(t, q)
	if err := q.Send(t.Context(), notification()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	h.wait(t, 3)
	ws.waitIdle(t, 1)
	if n := len(h.wait(t, 0)); n != 3 {
		t.Errorf("webhook got %d requests, want 3", n)
	}
	if pending(t, st) {
		t.Error("job still queued after MaxAttempts")
	}
	if s := q.Stats(); s != (push.Stats{Attempts: 3, Failures: 3, Dropped: 1}) {
		t.Errorf("stats %+v, want 3 attempts, 3 failures, 1 dropped", s)
	}
}

func TestSurvivesRestart(t *testing.T) {
	h, srv := newHook(t)
	path := filepath.Join(t.TempDir(), "registry.db")
	st, err := sqlite.Open(t.Context(), path, "push.example.com")
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	sender := push.WebhookSender{URL: srv.URL, Client: srv.Client()}
	if err := push.New(st, push.Options{Sender: sender}).Send(t.Context(), notification()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	run(t, push.New(openStore(t, path), push.Options{Sender: sender}))
	reqs := h.wait(t, 1)
	var m push.Message
	if err := json.Unmarshal(reqs[0].body, &m); err != nil || m.Text != "hello" {
		t.Errorf("body %s (%v), want the queued notification", reqs[0].body, err)
	}
}

func TestBackoff(t *testing.T) {
	for attempt, want := range map[int]time.Duration{
		1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 256 * time.Second,
		10: 5 * time.Minute, 100: 5 * time.Minute,
	} {
		if got := push.Backoff(attempt); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", attempt, got, want)
		}
	}
}

// TestEachNotificationHasItsOwnID: two notifications alike in every field
// are still two, and a receiver must not drop the second as a repeat.
func TestEachNotificationHasItsOwnID(t *testing.T) {
	h, srv := newHook(t)
	st := openStore(t, filepath.Join(t.TempDir(), "registry.db"))
	q := push.New(st, push.Options{Sender: push.WebhookSender{URL: srv.URL, Client: srv.Client()}, Tick: time.Hour})
	run(t, q)
	for range 2 {
		if err := q.Send(t.Context(), notification()); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	reqs := h.wait(t, 2)
	ids := make([]string, len(reqs))
	for i, r := range reqs {
		var m push.Message
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatal(err)
		}
		ids[i] = m.ID
	}
	if !hexID.MatchString(ids[0]) || !hexID.MatchString(ids[1]) || ids[0] == ids[1] {
		t.Fatalf("ids %q", ids)
	}
}
