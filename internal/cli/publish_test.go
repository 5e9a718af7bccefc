package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// request is what a test server saw.
type request struct {
	method, path, rawQuery, channelID string
	expiry                            []string
	contentType                       string
	body                              string
}

// recordingServer answers every request with status and body and keeps the
// last request.
func recordingServer(t *testing.T, status int, answer string) (*httptest.Server, func() (request, int)) {
	t.Helper()
	var (
		last  atomic.Pointer[request]
		count atomic.Int32
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		last.Store(&request{
			method:      r.Method,
			path:        r.URL.Path,
			rawQuery:    r.URL.RawQuery,
			channelID:   r.URL.Query().Get("CHANNEL_ID"),
			expiry:      r.Header.Values("Message-Expiry"),
			contentType: r.Header.Get("Content-Type"),
			body:        string(body),
		})
		count.Add(1)
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv, func() (request, int) {
		if p := last.Load(); p != nil {
			return *p, int(count.Load())
		}
		return request{}, 0
	}
}

func TestPublish(t *testing.T) {
	srv, seen := recordingServer(t, http.StatusOK, "")
	r, stdout, stderr := testRunner(t, nil)
	code := r.main(t.Context(), []string{
		"publish", "--url", srv.URL, "--expiry", "60",
		"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210",
		`{"module_id": "test", "command": "hello", "params": {"html": "<b>&</b>"}}`,
	})
	if code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	got, n := seen()
	want := request{
		method:      http.MethodPost,
		path:        "/pub/",
		rawQuery:    "CHANNEL_ID=0123456789abcdef0123456789abcdef/fedcba9876543210fedcba9876543210",
		channelID:   "0123456789abcdef0123456789abcdef/fedcba9876543210fedcba9876543210",
		expiry:      []string{"60"},
		contentType: "application/json",
		body:        `{"module_id":"test","command":"hello","params":{"html":"<b>&</b>"}}`,
	}
	if n != 1 || !equalRequest(got, want) {
		t.Errorf("%d requests, last\n got %+v\nwant %+v", n, got, want)
	}
	if stdout.String() != "" || stderr.String() != "" {
		t.Errorf("output on success: stdout %q, stderr %q", stdout, stderr)
	}
}

func equalRequest(a, b request) bool {
	return a.method == b.method && a.path == b.path && a.rawQuery == b.rawQuery &&
		a.channelID == b.channelID && strings.Join(a.expiry, ",") == strings.Join(b.expiry, ",") &&
		len(a.expiry) == len(b.expiry) && a.contentType == b.contentType && a.body == b.body
}

func TestPublishStdinAndPath(t *testing.T) {
	srv, seen := recordingServer(t, http.StatusOK, "")
	r, _, stderr := testRunner(t, nil)
	r.stdin = strings.NewReader("{\n  \"module_id\": \"test\",\n  \"params\": [1, 2]\n}\n")
	// A URL with a path is used as is, with its query kept; "a/b" as one
	// argument is a CHANNEL_ID list; expiry 0 is sent, not dropped.
	code := r.main(t.Context(), []string{
		"publish", "--url", srv.URL + "/bitrix/pub/?clientId=x", "--expiry", "0", "aaa/bbb", "ccc", "-",
	})
	if code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	got, _ := seen()
	if got.path != "/bitrix/pub/" || got.rawQuery != "clientId=x&CHANNEL_ID=aaa/bbb/ccc" ||
		got.body != `{"module_id":"test","params":[1,2]}` || len(got.expiry) != 1 || got.expiry[0] != "0" {
		t.Errorf("request %+v", got)
	}
}

func TestPublishWithoutExpirySendsNoHeader(t *testing.T) {
	srv, seen := recordingServer(t, http.StatusOK, "")
	r, _, stderr := testRunner(t, nil)
	if code := r.main(t.Context(), []string{"publish", "--url", srv.URL + "/", "id", "{}"}); code != exitOK {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	if got, _ := seen(); got.expiry != nil || got.path != "/pub/" {
		t.Errorf("request %+v, want no Message-Expiry, path /pub/", got)
	}
}

func TestPublishServerRefuses(t *testing.T) {
	srv, _ := recordingServer(t, http.StatusBadRequest, "4010: Wrong Channel Id.")
	r, _, stderr := testRunner(t, nil)
	code := r.main(t.Context(), []string{"publish", "--url", srv.URL, "nope", `{"a":1}`})
	if code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if want := "pushpull publish: server answered 400 Bad Request: 4010: Wrong Channel Id.\n"; stderr.String() != want {
		t.Errorf("stderr\n got %q\nwant %q", stderr, want)
	}
}

func TestPublishServerRefusesWithoutBody(t *testing.T) {
	srv, _ := recordingServer(t, http.StatusRequestEntityTooLarge, "")
	r, _, stderr := testRunner(t, nil)
	if code := r.main(t.Context(), []string{"publish", "--url", srv.URL, "id", `{"a":1}`}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if want := "pushpull publish: server answered 413 Request Entity Too Large\n"; stderr.String() != want {
		t.Errorf("stderr\n got %q\nwant %q", stderr, want)
	}
}

func TestPublishUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	r, _, stderr := testRunner(t, nil)
	if code := r.main(t.Context(), []string{"publish", "--url", url, "id", `{}`}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("stderr %q", stderr)
	}
}

func TestPublishTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	r, _, stderr := testRunner(t, nil)
	code := r.main(t.Context(), []string{"publish", "--url", srv.URL, "--timeout", "50ms", "id", `{}`})
	if code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr.String(), "no answer within 50ms") {
		t.Errorf("stderr %q", stderr)
	}
}

func TestPublishUsageErrors(t *testing.T) {
	srv, seen := recordingServer(t, http.StatusOK, "")
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{
			name: "nothing",
			args: nil,
			want: "want at least one CHANNEL_ID and then the BODY (or - to read it from standard input)",
		},
		{
			name: "no body",
			args: []string{"0123456789abcdef0123456789abcdef"},
			want: "want at least one CHANNEL_ID and then the BODY",
		},
		{
			name: "body not JSON",
			args: []string{"id", "hello"},
			want: "the body from BODY is not JSON: invalid character 'h' looking for beginning of value (at byte 1)",
		},
		{
			name: "two JSON values",
			args: []string{"id", "{} {}"},
			want: "the body from BODY is not JSON: invalid character '{' after top-level value (at byte 4)",
		},
		{
			name:  "stdin not JSON",
			args:  []string{"id", "-"},
			stdin: `{"a":`,
			want:  "the body from standard input is not JSON: unexpected end of JSON input",
		},
		{
			name:  "stdin empty",
			args:  []string{"id", "-"},
			stdin: " \n",
			want:  "the body from standard input is empty: the server refuses empty messages",
		},
		{
			name: "negative expiry",
			args: []string{"--expiry", "-1", "id", "{}"},
			want: "invalid --expiry -1: want 0 or more seconds",
		},
		{
			name: "bad timeout",
			args: []string{"--timeout", "0s", "id", "{}"},
			want: "invalid --timeout 0s: want more than 0",
		},
		{
			name: "bad url",
			args: []string{"--url", "127.0.0.1:8080", "id", "{}"},
			want: `invalid --url "127.0.0.1:8080": want an http or https URL, like http://127.0.0.1:8895`,
		},
		{
			name: "flag after the arguments",
			args: []string{"id", "--expiry", "{}"},
			want: `flags go before the arguments: move "--expiry" to the front`,
		},
		{
			name: "empty channel id",
			args: []string{"a//b", "{}"},
			want: `invalid CHANNEL_ID "a//b": empty channel id`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, stderr := testRunner(t, nil)
			r.stdin = strings.NewReader(tt.stdin)
			args := append([]string{"publish"}, tt.args...)
			if !strings.HasPrefix(tt.name, "bad url") {
				args = append([]string{"publish", "--url", srv.URL}, tt.args...)
			}
			if code := r.main(t.Context(), args); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			want := "pushpull publish: " + tt.want
			if !strings.HasPrefix(stderr.String(), want) {
				t.Errorf("stderr\n got %q\nwant prefix %q", stderr, want)
			}
		})
	}
	if _, n := seen(); n != 0 {
		t.Errorf("%d requests sent for bad command lines", n)
	}
}

// roundTripFunc lets a test see the requests an http.Client would send.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestPublishDefaultsToTheInternalListener: /pub/ is served on the trusted
// listener only, so that is where publish goes unless told otherwise.
func TestPublishDefaultsToTheInternalListener(t *testing.T) {
	r, _, stderr := testRunner(t, nil)
	var got atomic.Pointer[string]
	r.httpClient = &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		u := req.URL.String()
		got.Store(&u)
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("")), Request: req}, nil
	})}
	if code := r.main(t.Context(), []string{"publish", "0123456789abcdef0123456789abcdef", "{}"}); code != exitOK {
		t.Fatalf("exit %d; stderr %q", code, stderr)
	}
	if u := got.Load(); u == nil || *u != "http://127.0.0.1:8895/pub/?CHANNEL_ID=0123456789abcdef0123456789abcdef" {
		t.Fatalf("published to %v", u)
	}
}
