package server

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// bodyDeadline bounds the reading of each request body to timeout, so that
// a client trickling a body cannot hold a connection and a handler for ever
// (http.Server only bounds the header read). http.Server.ReadTimeout would do
// it for every request, but also for long polls and hijacked WebSockets, which
// must stay open; so the deadline is set per request, only on requests that
// carry a body, and cleared once the body is read: net/http then watches the
// connection for the client going away, and that read must not time out
// while a handler still works.
func bodyDeadline(timeout time.Duration, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || (r.ContentLength == 0 && len(r.TransferEncoding) == 0) {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			// Only a ResponseWriter that is not the server's own cannot;
			// serve the request rather than refuse it.
			log.DebugContext(r.Context(), "cannot set the body read deadline", "err", err)
			next.ServeHTTP(w, r)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody clears the connection's read deadline when the body has been
// read to its end.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	cleared bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.cleared {
		b.cleared = true
		_ = b.rc.SetReadDeadline(time.Time{}) // the connection may be gone; nothing to do then
	}
	return n, err
}
