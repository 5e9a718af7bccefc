package pullclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

const (
	// pollAbort is how long a long poll may take before it is abandoned and
	// issued again, as the official clients do (LONG_POLLING_TIMEOUT); the
	// server answers 304 after 40 s.
	pollAbort = 60 * time.Second
	// pollConnectedAfter is how long a first poll must be held by the
	// server before the connection counts as up, as the official clients
	// count it.
	pollConnectedAfter = 5 * time.Second
	// lastMessageExpires is the Expires header with which a 304 vouches for
	// its Last-Message-Id; the official clients adopt the id only then.
	lastMessageExpires = "Thu, 01 Jan 1973 11:11:01 GMT"
)

// errRestoreWebSocket ends long polling in Auto mode when it is time to
// try a WebSocket again.
var errRestoreWebSocket = errors.New("trying a WebSocket again")

// pollAnswer is one long poll's outcome.
type pollAnswer struct {
	status int
	body   []byte
	header http.Header
	err    error
}

// longPoll polls until an error: 200 brings messages, 304 a
// Last-Message-Id to continue from, and either way the next poll follows at
// once. connected reports whether a poll was answered, or held long enough.
func (r *runner) longPoll(ctx context.Context) (connected bool, err error) {
	restoreAt := time.Now().Add(r.cfg.RestoreWebSocket)
	for {
		var a pollAnswer
		if connected {
			a = r.pollOnce(ctx)
		} else {
			// The first poll runs beside a timer, so that a server that
			// holds it (nothing to send) still counts as connected.
			answered := make(chan pollAnswer, 1)
			go func() { answered <- r.pollOnce(ctx) }()
			t := time.NewTimer(pollConnectedAfter)
			select {
			case a = <-answered:
				t.Stop()
			case <-t.C:
				connected = true
				if err := r.emit(Connected{Transport: LongPoll, MID: r.lastMID()}); err != nil {
					// The poll ends with ctx or its answer; wait for it
					// so that no goroutine outlives the call.
					<-answered
					return true, err
				}
				a = <-answered
			}
		}
		if a.err != nil {
			if ctx.Err() != nil {
				return connected, ctx.Err()
			}
			return connected, a.err
		}
		if a.status != http.StatusOK && a.status != http.StatusNotModified {
			return connected, statusError(a.status, a.body)
		}
		if !connected {
			connected = true
			if err := r.emit(Connected{Transport: LongPoll, MID: r.lastMID()}); err != nil {
				return true, err
			}
		}
		if a.status == http.StatusOK {
			if err := r.deliver(a.body); err != nil {
				return true, err
			}
		} else if id := a.header.Get("Last-Message-Id"); id != "" && a.header.Get("Expires") == lastMessageExpires {
			r.setMID(id)
		}
		if r.cfg.Transport == Auto && time.Now().After(restoreAt) {
			return true, errRestoreWebSocket
		}
	}
}

// pollOnce issues one poll. A poll the server held past pollAbort is
// taken as a 304 without a Last-Message-Id, so that polling goes on.
func (r *runner) pollOnce(ctx context.Context) pollAnswer {
	pctx, cancel := context.WithTimeout(ctx, pollAbort)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, r.requestURL(r.cfg.LongPollURL), nil)
	if err != nil {
		return pollAnswer{err: err}
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var body []byte
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxMessageSize+1))
		if err == nil && len(body) > maxMessageSize {
			err = fmt.Errorf("answer larger than %d bytes", maxMessageSize)
		}
		if err == nil {
			return pollAnswer{status: resp.StatusCode, body: body, header: resp.Header}
		}
	}
	if ctx.Err() == nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
		return pollAnswer{status: http.StatusNotModified, header: http.Header{}}
	}
	return pollAnswer{err: fmt.Errorf("poll %s: %w", redacted(r.cfg.LongPollURL), err)}
}
