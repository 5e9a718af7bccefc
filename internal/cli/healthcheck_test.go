package cli

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/testkit"
)

// startServer runs the real server on loopback listeners bound first, and
// returns its public base URL; it is stopped when the test ends.
func startServer(t *testing.T) string {
	t.Helper()
	srv, err := server.New(testkit.Config(t), testkit.Logger())
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Serve(t, srv, true).URL
}

func TestHealthcheckReadyServer(t *testing.T) {
	base := startServer(t)
	for _, path := range []string{"/readyz", "/healthz"} {
		r, stdout, stderr := testRunner(t, nil)
		if code := r.main(t.Context(), []string{"healthcheck", "--url", base + path}); code != exitOK {
			t.Errorf("%s: exit %d, stderr %q", path, code, stderr)
		}
		if stdout.String() != "" || stderr.String() != "" {
			t.Errorf("%s: stdout %q, stderr %q; want both empty", path, stdout, stderr)
		}
	}
}

func TestHealthcheckFailures(t *testing.T) {
	draining := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "draining\nmore text\n")
	}))
	defer draining.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String() + "/readyz"
	closed.Close()
	base := startServer(t)

	for _, tc := range []struct {
		name, url, want string
	}{
		{"not ready", draining.URL + "/readyz",
			"pushpull healthcheck: GET " + draining.URL + "/readyz: 503 Service Unavailable: draining\n"},
		{"no such route", base + "/nothing",
			"pushpull healthcheck: GET " + base + "/nothing: 404 Not Found"},
		{"nobody listens", closedURL,
			"pushpull healthcheck: Get \"" + closedURL + "\": dial tcp"},
	} {
		r, _, stderr := testRunner(t, nil)
		if code := r.main(t.Context(), []string{"healthcheck", "--url", tc.url}); code != exitFailure {
			t.Errorf("%s: exit %d, want %d", tc.name, code, exitFailure)
		}
		if !strings.HasPrefix(stderr.String(), tc.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%s: stderr %q, want one line starting %q", tc.name, stderr, tc.want)
		}
	}
}

func TestHealthcheckUsage(t *testing.T) {
	for _, args := range [][]string{{"extra"}, {"--timeout", "0s"}, {"--nope"}} {
		r, _, stderr := testRunner(t, nil)
		if code := r.main(t.Context(), append([]string{"healthcheck"}, args...)); code != exitUsage {
			t.Errorf("%q: exit %d, want %d; stderr %q", args, code, exitUsage, stderr)
		}
	}
}
