package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
)

// fakeServer serves a fixed JSON answer on both listeners until ctx ends,
// and reports what it was given.
type fakeServer struct {
	internal net.Listener
	stopErr  error
}

func (f *fakeServer) ServeListeners(ctx context.Context, public, internal net.Listener) error {
	f.internal = internal
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Test", "yes")
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte(`{"a":1}`))
	})
	for _, ln := range []net.Listener{public, internal} {
		if ln != nil {
			srv := &http.Server{Handler: h}
			go func() { _ = srv.Serve(ln) }()
			defer srv.Close()
		}
	}
	<-ctx.Done()
	return f.stopErr
}

func TestServeAndJSON(t *testing.T) {
	for _, internal := range []bool{false, true} {
		f := &fakeServer{}
		srv := Serve(t, f, internal)
		if (srv.Internal != srv.URL) != internal {
			t.Errorf("internal %v: URL %s, Internal %s", internal, srv.URL, srv.Internal)
		}
		for _, base := range []string{srv.URL, srv.Internal} {
			status, h, body := JSON(t)(http.Get(base + "/x"))
			if status != http.StatusTeapot || h.Get("X-Test") != "yes" || body["a"] != 1.0 {
				t.Errorf("%s: %d %v %v", base, status, h, body)
			}
		}
		srv.Stop(t)
		srv.Stop(t) // a second Stop is harmless
		if (f.internal != nil) != internal {
			t.Errorf("internal listener given: %v, want %v", f.internal != nil, internal)
		}
	}
}

// TestStopReportsTheServersError runs Stop under a recording TB.
func TestStopReportsTheServersError(t *testing.T) {
	rec := &recorder{TB: t}
	srv := Serve(rec, &fakeServer{stopErr: errors.New("boom")}, false)
	srv.Stop(rec)
	if len(rec.errors) != 1 || rec.errors[0] != "server shutdown: boom" {
		t.Errorf("errors %q", rec.errors)
	}
}

// recorder is a testing.TB that keeps Errorf's messages instead of failing.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
