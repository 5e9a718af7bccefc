package rest

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log destination the handler may write from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEveryCallLogsOneLine: each REST call, answered or refused, gets
// exactly one debug line naming the method and the outcome, and none of
// them carries the token or the webhook secret it was made with.
func TestEveryCallLogsOneLine(t *testing.T) {
	var logs lockedBuffer
	s := New(fakeAuth{}, Options{Now: func() time.Time { return fixedNow }, MaxBody: 4096,
		Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	s.Register(Method{Name: "pull.echo", Scope: "pull", Handler: func(context.Context, Caller, Params) (any, error) { return true, nil }})
	tests := []struct {
		target string
		hdr    []string
		want   []string
	}{
		{"/rest/pull.echo?auth=good&SECRETPARAM=personal", nil,
			[]string{"method=pull.echo", "status=200", "auth=oauth", "user=1", "client_id=local.x"}},
		{"/rest/pull.echo", []string{"Authorization", "Bearer expired"},
			[]string{"method=pull.echo", "status=401", "error=expired_token"}},
		{"/rest/5/s3cret/pull.echo.json", nil,
			[]string{"method=pull.echo", "status=200", "auth=webhook", "user=5"}},
		{"/rest/5/wrongs3cret/pull.echo.json", nil,
			[]string{"method=pull.echo", "status=403", "error=INVALID_CREDENTIALS", "auth=webhook"}},
		{"/rest/no.such.method?auth=good", nil,
			[]string{"method=no.such.method", "status=404", "error=ERROR_METHOD_NOT_FOUND"}},
	}
	for _, tt := range tests {
		before := len(logs.String())
		r := httptest.NewRequest(http.MethodGet, "http://x"+tt.target, nil)
		if len(tt.hdr) == 2 {
			r.Header.Set(tt.hdr[0], tt.hdr[1])
		}
		s.Handler().ServeHTTP(httptest.NewRecorder(), r)
		lines := strings.Split(strings.TrimSpace(logs.String()[before:]), "\n")
		if len(lines) != 1 {
			t.Errorf("%s: %d log lines, want 1:\n%s", tt.target, len(lines), strings.Join(lines, "\n"))
			continue
		}
		for _, w := range append(tt.want, "level=DEBUG", `msg="rest call"`, "duration=") {
			if !strings.Contains(lines[0], w) {
				t.Errorf("%s: log line %q lacks %q", tt.target, lines[0], w)
			}
		}
	}
	for _, secret := range []string{"good", "Bearer", "s3cret", "personal"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs.String())
		}
	}
}
