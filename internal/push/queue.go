// Package push is the mobile push queue and its providers. Notifications
// accepted by pull.application.push.add are stored as jobs in the registry
// (so they survive a restart) and delivered by a worker through a Sender,
// with exponential backoff on failure.
package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/store"
)

// Sender delivers one queued notification (its JSON payload) to a provider.
// An error means the attempt failed and is retried.
type Sender interface {
	Deliver(ctx context.Context, payload []byte) error
}

// Message is the JSON form of a notification: what a job's payload holds
// and what WebhookSender posts.
type Message struct {
	// ID names the notification: 32 random hex characters, chosen when it
	// is queued and kept in the job, so that every attempt to deliver it
	// carries the same one. Delivery is at least once (an attempt cut by a
	// crash or a timeout is repeated); a receiver drops an ID it has seen.
	ID         string    `json:"id"`
	UserIDs    []int64   `json:"user_ids"`
	Text       string    `json:"text"`
	ClientID   string    `json:"client_id"`
	SenderName string    `json:"sender_name"`
	AvatarURL  string    `json:"avatar_url,omitempty"`
	Created    time.Time `json:"created"`
}

// Defaults of Options.
const (
	DefaultMaxAttempts = 10
	DefaultTick        = time.Second
	DefaultTimeout     = 30 * time.Second
	maxBackoff         = 5 * time.Minute
)

// Options tunes a Queue; zero values take the defaults.
type Options struct {
	// Sender delivers the jobs. Required.
	Sender Sender
	Log    *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
	// Backoff is the delay before the next attempt after the attempt-th
	// failure (Backoff: 1s, 2s, 4s ... capped at 5 minutes).
	Backoff func(attempt int) time.Duration
	// MaxAttempts is how many attempts a job gets before it is dropped
	// (DefaultMaxAttempts).
	MaxAttempts int
	// Tick is how often the worker looks for jobs due for a retry
	// (DefaultTick). New jobs wake it at once.
	Tick time.Duration
	// Timeout bounds one delivery attempt (DefaultTimeout). A claimed job is
	// leased for twice as long, so an attempt cut short by a crash or a
	// shutdown is retried after that.
	Timeout time.Duration
}

// Backoff is the default retry delay: 1s after the first failure, doubling,
// capped at 5 minutes.
func Backoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if attempt > 20 {
		return maxBackoff
	}
	return min(time.Second<<(attempt-1), maxBackoff)
}

// Queue is a durable push queue. It implements Notifier; Run
// delivers what Send enqueues.
type Queue struct {
	store store.Store
	opt   Options
	wake  chan struct{}
	// registryDown is set while claiming fails, so that an outage is
	// logged once.
	registryDown atomic.Bool
	// Counted for the metrics (Stats).
	attempts, failures, dropped atomic.Uint64
}

var _ Notifier = (*Queue)(nil)

// New returns a queue of jobs kept in st.
func New(st store.Store, opt Options) *Queue {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Backoff == nil {
		opt.Backoff = Backoff
	}
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = DefaultMaxAttempts
	}
	if opt.Tick <= 0 {
		opt.Tick = DefaultTick
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	return &Queue{store: st, opt: opt, wake: make(chan struct{}, 1)}
}

// Send implements Notifier: it stores the notification as a job and
// wakes the worker.
func (q *Queue) Send(ctx context.Context, n Notification) error {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("push: notification id: %w", err)
	}
	payload, err := json.Marshal(Message{ID: hex.EncodeToString(raw[:]), UserIDs: n.UserIDs, Text: n.Text, ClientID: n.ClientID,
		SenderName: n.SenderName, AvatarURL: n.AvatarURL, Created: n.Created})
	if err != nil {
		return fmt.Errorf("push: encode notification: %w", err)
	}
	if _, err := q.store.EnqueuePush(ctx, payload, q.opt.Now()); err != nil {
		return fmt.Errorf("push: enqueue: %w", err)
	}
	select {
	case q.wake <- struct{}{}:
	default: // already woken
	}
	return nil
}

// Run delivers due jobs until ctx is cancelled: at once when Send wakes it,
// and every Tick for retries. Jobs are delivered one at a time.
func (q *Queue) Run(ctx context.Context) {
	t := time.NewTicker(q.opt.Tick)
	defer t.Stop()
	for {
		q.drain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-t.C:
		}
	}
}

// drain delivers jobs until none is due.
func (q *Queue) drain(ctx context.Context) {
	for ctx.Err() == nil {
		job, err := q.store.ClaimPush(ctx, q.opt.Now(), 2*q.opt.Timeout)
		if errors.Is(err, store.ErrNotFound) {
			q.registryBack()
			return
		}
		if err != nil {
			// Said once per outage, not at every poll of the queue.
			if ctx.Err() == nil && !q.registryDown.Swap(true) {
				q.opt.Log.Error("push: cannot read the queue; retrying until the registry answers", "err", err)
			}
			return
		}
		q.registryBack()
		q.deliver(ctx, job)
	}
}

// registryBack notes that the registry answers again.
func (q *Queue) registryBack() {
	if q.registryDown.Swap(false) {
		q.opt.Log.Info("push: the registry answers again")
	}
}

func (q *Queue) deliver(ctx context.Context, job store.PushJob) {
	dctx, cancel := context.WithTimeout(ctx, q.opt.Timeout)
	err := q.opt.Sender.Deliver(dctx, job.Payload)
	cancel()
	q.attempts.Add(1)
	if err == nil {
		if err := q.store.CompletePush(ctx, job.ID); err != nil {
			q.opt.Log.Error("push: complete job", "job", job.ID, "err", err)
		}
		return
	}
	if ctx.Err() != nil {
		// Shutting down: the attempt does not count; the job is retried
		// when its lease expires.
		return
	}
	q.failures.Add(1)
	attempt := job.Attempts + 1
	if attempt >= q.opt.MaxAttempts {
		q.dropped.Add(1)
		q.opt.Log.Error("push: dropping notification after too many failed attempts; check the receiver at --push-webhook",
			"job", job.ID, "attempts", attempt, "err", err)
		if err := q.store.CompletePush(ctx, job.ID); err != nil {
			q.opt.Log.Error("push: drop job", "job", job.ID, "err", err)
		}
		return
	}
	next := q.opt.Now().Add(q.opt.Backoff(attempt))
	q.opt.Log.Warn("push: delivery failed, will retry; if this repeats, check the receiver at --push-webhook", "job", job.ID, "attempt", attempt, "next", next, "err", err)
	if err := q.store.RetryPush(ctx, job.ID, next); err != nil {
		q.opt.Log.Error("push: reschedule job", "job", job.ID, "err", err)
	}
}

// Stats are the queue's delivery counts since start, for the metrics.
type Stats struct {
	// Attempts are deliveries tried; Failures those that failed (a retry
	// follows unless the job is Dropped after its last attempt). An attempt
	// cut short by shutdown counts as neither failure nor drop.
	Attempts, Failures, Dropped uint64
}

// Stats reads the counters.
func (q *Queue) Stats() Stats {
	return Stats{Attempts: q.attempts.Load(), Failures: q.failures.Load(), Dropped: q.dropped.Load()}
}

// Len returns the jobs waiting in the registry, due or not.
func (q *Queue) Len(ctx context.Context) (int64, error) { return q.store.PushQueueLen(ctx) }
