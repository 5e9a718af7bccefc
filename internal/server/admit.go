package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/rest"
)

// largeBody is the body size from which a public request needs an admission
// slot. Below it a request costs well under a millisecond to parse, and
// every ordinary client call (REST pull.* methods, a client publish, an
// OAuth token exchange) is far smaller, so ordinary traffic never queues.
const largeBody = 64 << 10

// admission bounds how many large-bodied public requests are read and
// handled at once. Each 1 MiB JSON body costs 10–17 ms of CPU and a few MiB
// of transient memory to parse; with dozens in flight the Go scheduler gives
// them the cores ahead of deliveries, /healthz and the internal listener,
// and the heap grows with them. A few slots keep the cores and the heap for
// everything else; a request that finds none waits (its body unread, in the
// kernel's socket buffer) for at most wait, then is refused.
//
// The slots are held while bodies are read, which on slow networks takes
// longer than parsing them, so there are more slots than cores. Of the
// admitted requests whose body has been read, only handlers run at once
// (one core fewer than the process has, at least one): the rest wait, their
// bodies read, until one is done. So large bodies never take every core, and
// the one left over is there as soon as a delivery, a health check or the
// network poller needs it, instead of after the scheduler's 10 ms slice of a
// parse (measured: docs/security.md).
type admission struct {
	slots    chan struct{}
	handlers chan struct{}
	wait     time.Duration
	log      *slog.Logger
	// pace spaces out each address's large requests, and paceAll all
	// addresses' together; nil: not paced.
	pace, paceAll *pacer
	// sleep waits d, or less if ctx ends first (false then); tests
	// replace it.
	sleep func(ctx context.Context, d time.Duration) bool
	// queued, when set, is called as a request starts waiting for a slot
	// (tests); turnQueued as one with its body read starts waiting for
	// its turn to be handled.
	queued, turnQueued func()
}

// newAdmission returns an admission of n slots whose requests wait at most
// wait for one, of which handlers run at once once their body is read.
func newAdmission(n, handlers int, wait time.Duration, log *slog.Logger) *admission {
	return &admission{slots: make(chan struct{}, n), handlers: make(chan struct{}, max(handlers, 1)), wait: wait, log: log,
		sleep: sleepCtx}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// needsSlot reports whether r carries a body that is large or of unknown
// length (chunked). Requests without a body, such as WebSocket upgrades and
// long polls, never do.
func needsSlot(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	return r.ContentLength < 0 || r.ContentLength > largeBody
}

// wrap returns next behind the admission: large requests hold a slot while
// their body is read and they are handled.
func (a *admission) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !needsSlot(r) {
			next.ServeHTTP(w, r)
			return
		}
		// An address ahead of its pace waits for its turn; one so far
		// ahead that the turn is past the admission's wait is held as long
		// as a request waiting for a slot would be, then refused, so that
		// refusing it does not invite the next request sooner.
		// Then all addresses together keep to a pace, so that an attack
		// from many addresses, each within its own, still cannot take the
		// cores.
		if wait, ok := a.pace.reserve(r, a.wait); !ok {
			a.sleep(r.Context(), a.wait)
			a.refuse(w, r, "over its address's pace")
			return
		} else if wait > 0 && !a.sleep(r.Context(), wait) {
			return
		}
		if wait, ok := a.paceAll.reserveAll(a.wait); !ok {
			a.sleep(r.Context(), a.wait)
			a.refuse(w, r, "over the pace of all addresses")
			return
		} else if wait > 0 && !a.sleep(r.Context(), wait) {
			return
		}
		if !a.acquire(r) {
			a.refuse(w, r, "no admission slot")
			return
		}
		defer func() { <-a.slots }()
		b := &readBody{ReadCloser: r.Body, left: r.ContentLength, handlers: a.handlers, done: r.Context().Done(), queued: a.turnQueued}
		defer b.release()
		r.Body = b
		next.ServeHTTP(w, r)
	})
}

// readBody is an admitted request's body: the read that ends it waits for
// a handler's turn, so that what the handler does with the whole body is
// done in turn. A handler that never reads its body to the end (a 413 by
// the announced length, a 405) never waits.
type readBody struct {
	io.ReadCloser
	left     int64 // bytes not yet read; -1: unknown (chunked)
	handlers chan struct{}
	done     <-chan struct{}
	queued   func()
	held     bool
}

// errGone is what a body read answers when the client went away while its
// request waited for its turn.
var errGone = errors.New("request cancelled while waiting for its turn to be handled")

func (b *readBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if !b.held && (err == io.EOF || b.left == 0) {
		select {
		case b.handlers <- struct{}{}:
			b.held = true
			return n, err
		default:
		}
		if b.queued != nil {
			b.queued()
		}
		select {
		case b.handlers <- struct{}{}:
			b.held = true
		case <-b.done:
			return n, errGone
		}
	}
	return n, err
}

// release gives the turn back once the handler is done.
func (b *readBody) release() {
	if b.held {
		b.held = false
		<-b.handlers
	}
}

// acquire takes a slot, waiting at most a.wait and while the client is
// there.
func (a *admission) acquire(r *http.Request) bool {
	select {
	case a.slots <- struct{}{}:
		return true
	default:
	}
	if a.queued != nil {
		a.queued()
	}
	t := time.NewTimer(a.wait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-r.Context().Done():
		return false
	}
}

// busyText is the answer to a refused request outside /rest/.
const busyText = "server busy: too many large requests at once; retry later\n"

// refuse answers 503 without reading the body, and closes the connection so
// that the client can neither pipeline another request behind it nor make
// net/http drain the body it announced.
func (a *admission) refuse(w http.ResponseWriter, r *http.Request, why string) {
	a.log.DebugContext(r.Context(), "large request refused: "+why, "path", r.URL.Path, "content_length", r.ContentLength, "remote", r.RemoteAddr)
	// net/http discards up to 256 KiB of an unread body after the handler,
	// even when it then closes the connection; a client that never sends
	// it would hold the connection. An expired read deadline makes that
	// read fail at once. The answer is written all the same.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	h := w.Header()
	h.Set("Retry-After", "1")
	h.Set("Connection", "close")
	if r.URL.Path == "/rest" || strings.HasPrefix(r.URL.Path, "/rest/") {
		// Bitrix's own code for a REST call refused under load.
		e := rest.QueryLimitExceeded()
		body, _ := json.Marshal(map[string]string{"error": e.Code, "error_description": e.Description})
		h.Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(e.Status)
		_, _ = w.Write(body)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(busyText))
}
