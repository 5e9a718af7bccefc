package server

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/wire"
)

// scrape is one read of /metrics, parsed from the text exposition.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, base string) scrape {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value is the sample of family name with the given label pairs: a
// counter's or gauge's value, a histogram's count; -1 when there is none.
func (s scrape) value(name string, labels ...string) float64 {
	f := s[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// wsClient is a client socket that reads first what the handshake's reader
// holds: the server may send its first frame with the 101 response.
type wsClient struct {
	io.Reader
	conn net.Conn
}

func (c *wsClient) Write(p []byte) (int, error) { return c.conn.Write(p) }

func dialWS(t *testing.T, u string) *wsClient {
	t.Helper()
	conn, br, _, err := ws.Dial(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{Reader: conn, conn: conn}
	if br != nil {
		c.Reader = io.MultiReader(br, conn)
	}
	return c
}

// TestMetricsFollowARealFlow drives a server over real sockets (publishes,
// a recovering WebSocket, a refused long poll, a connection over the
// per-channel limit, REST calls, OAuth, a mobile push) and checks that
// every family of /metrics moved as it should.
func TestMetricsFollowARealFlow(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECRET"
	cfg.MaxConnPerChannel = 1
	var srv *Server
	r := startWith(t, cfg, func(s *Server) { srv = s })
	if code, _ := get(t, r.URL+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics on the public listener: %d, want 404", code)
	}
	before := scrapeMetrics(t, r.Internal)
	for _, name := range []string{"pushpull_deliveries_total", "pushpull_recoveries_total", "pushpull_push_attempts_total"} {
		if v := before.value(name); v != 0 {
			t.Errorf("%s = %v at start, want 0", name, v)
		}
	}

	signer := channel.NewSigner([]byte("SECRET"), channel.SHA1)
	priv, pub := mustParse(t, "fb9f7e13dc3d595c5aefe1a0216c27a2"), mustParse(t, "0e6bb6d5b3f04e0a9c2f6cb1b5e1a7f3")
	publish := func(body string) {
		t.Helper()
		resp, err := http.Post(r.Internal+"/pub/?CHANNEL_ID="+priv.String(), "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("publish: %d", resp.StatusCode)
		}
	}
	subURL := strings.Replace(r.URL, "http://", "ws://", 1) + "/sub/?CHANNEL_ID=" + url.QueryEscape(signer.SignPrivate(priv, pub))
	readText := func(c *wsClient, want string) {
		t.Helper()
		// A deadline, so that a lost message fails the test with the
		// counters rather than hanging it.
		_ = c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		data, err := wsutil.ReadServerText(c)
		if err != nil {
			m := scrapeMetrics(t, r.Internal)
			t.Fatalf("reading %q: %v (deliveries %v, writes %v, drops %v, published %v)", want, err,
				m.value("pushpull_deliveries_total"), m.value("pushpull_socket_write_deliveries"),
				m.value("pushpull_connection_drops_total", "reason", "write_error"), m.value("pushpull_messages_published_total", "route", "pub_text"))
		}
		frames, err := wire.ParseTextFrames(data)
		if err != nil || len(frames) != 1 || !strings.Contains(string(frames[0].Text), want) {
			t.Fatalf("got %q, want one frame with %q (%v)", data, want, err)
		}
	}

	// Stored before anyone listens, then replayed to a recovering socket.
	publish("first")
	ws1 := dialWS(t, subURL+"&mid=00000000000000000000000000")
	readText(ws1, "first")
	publish("second") // live
	readText(ws1, "second")

	// A long poll with a forged signature is refused.
	forged := channel.NewSigner([]byte("OTHER"), channel.SHA1).SignChannel(priv)
	if code, _ := get(t, r.URL+"/sub/?CHANNEL_ID="+url.QueryEscape(forged)); code != http.StatusBadRequest {
		t.Fatalf("forged long poll: %d", code)
	}
	// A second socket on the same private channel pushes the first out.
	dialWS(t, subURL)
	var closed wsutil.ClosedError
	if _, err := wsutil.ReadServerText(ws1); !errors.As(err, &closed) || closed.Code != 4029 {
		t.Fatalf("first socket after the second connected: %v, want close 4029", err)
	}

	// REST and OAuth.
	app, tok := appUserToken(t, srv.store, true)
	if status, _ := call(t, r.URL+"/rest/pull.application.config.get", url.Values{"auth": {tok.AccessToken}}); status != 200 {
		t.Fatalf("config.get: %d", status)
	}
	if status, _ := call(t, r.URL+"/rest/pull.application.config.get", url.Values{}); status != 401 {
		t.Fatalf("config.get without auth: %d", status)
	}
	if status, _ := call(t, r.URL+"/rest/pull.application.event.add", url.Values{"auth": {tok.AccessToken}, "COMMAND": {"greet"}}); status != 200 {
		t.Fatalf("event.add: %d", status)
	}
	if status, _ := call(t, r.URL+"/rest/pull.application.push.add", url.Values{"auth": {tok.AccessToken}, "USER_ID": {"3"}, "TEXT": {"hi"}}); status != 200 {
		t.Fatalf("push.add: %d", status)
	}
	if status, _ := call(t, r.URL+"/oauth/token/", url.Values{"grant_type": {"refresh_token"}, "client_id": {app.ClientID},
		"client_secret": {app.ClientSecret}, "refresh_token": {tok.RefreshToken}}); status != 200 {
		t.Fatalf("refresh: %d", status)
	}
	if status, _ := call(t, r.URL+"/oauth/token/", url.Values{"grant_type": {"refresh_token"}, "client_id": {app.ClientID},
		"client_secret": {"wrong"}, "refresh_token": {tok.RefreshToken}}); status != 401 {
		t.Fatalf("refresh with a wrong secret: %d", status)
	}

	// The push worker delivers on its own goroutine; the counter is the
	// only sign that it has.
	var after scrape
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		after = scrapeMetrics(t, r.Internal)
		if after.value("pushpull_push_attempts_total") >= 1 || time.Now().After(deadline) {
			break
		}
	}

	type want struct {
		name   string
		labels []string
		check  func(before, after float64) bool
		means  string
	}
	grew := func(n float64) func(b, a float64) bool { return func(b, a float64) bool { return a-b == n } }
	atLeast := func(n float64) func(b, a float64) bool { return func(_, a float64) bool { return a >= n } }
	is := func(n float64) func(b, a float64) bool { return func(_, a float64) bool { return a == n } }
	for _, w := range []want{
		{"pushpull_connections", []string{"transport", "websocket", "protocol", "text"}, is(1), "one socket left"},
		{"pushpull_connections", []string{"transport", "longpoll", "protocol", "text"}, is(0), "no long poll open"},
		{"pushpull_handshakes_total", []string{"transport", "websocket"}, grew(2), "two sockets"},
		{"pushpull_handshakes_total", []string{"transport", "longpoll"}, grew(1), "one long poll"},
		{"pushpull_handshake_failures_total", []string{"reason", "bad_signature"}, grew(1), "the forged poll"},
		{"pushpull_handshake_failures_total", []string{"reason", "bad_token"}, grew(0), "no token was tried"},
		{"pushpull_handshake_failures_total", []string{"reason", "other"}, grew(0), "the broker took every subscription"},
		{"pushpull_channels", nil, is(1), "the private channel"},
		{"pushpull_history_messages", nil, atLeast(2), "first, second and the REST event"},
		{"pushpull_history_bytes", nil, atLeast(1), "stored bytes"},
		{"pushpull_messages_published_total", []string{"route", "pub_text"}, grew(2), "two /pub/ posts"},
		{"pushpull_messages_published_total", []string{"route", "rest"}, grew(1), "one event.add"},
		{"pushpull_messages_published_total", []string{"route", "api"}, grew(0), "no /api/ call"},
		{"pushpull_deliveries_total", nil, grew(1), "the live message"},
		{"pushpull_connection_drops_total", []string{"reason", "connection_limit"}, grew(1), "the evicted socket"},
		{"pushpull_connection_drops_total", []string{"reason", "slow_consumer"}, grew(0), "nobody was slow"},
		{"pushpull_recoveries_total", nil, grew(1), "the socket with mid"},
		{"pushpull_messages_replayed_total", nil, grew(1), "first"},
		{"pushpull_publish_to_socket_seconds", nil, grew(1), "second, live; the replay is not timed"},
		{"pushpull_socket_write_deliveries", nil, grew(2), "the replay and the live write"},
		{"pushpull_rest_calls_total", []string{"method", "pull.application.config.get", "outcome", "ok"}, grew(1), "config.get"},
		{"pushpull_rest_calls_total", []string{"method", "pull.application.config.get", "outcome", "NO_AUTH_FOUND"}, is(1), "config.get without auth"},
		{"pushpull_rest_calls_total", []string{"method", "pull.application.push.add", "outcome", "ok"}, is(1), "push.add"},
		{"pushpull_rest_call_duration_seconds", []string{"method", "pull.application.config.get"}, is(2), "both config.get calls timed"},
		{"pushpull_oauth_grants_total", []string{"grant_type", "refresh_token", "outcome", "ok"}, grew(1), "the refresh"},
		{"pushpull_oauth_grants_total", []string{"grant_type", "refresh_token", "outcome", "invalid_client"}, grew(1), "the wrong secret"},
		{"pushpull_push_attempts_total", nil, grew(1), "the push delivered"},
		{"pushpull_push_failures_total", nil, grew(0), "the log sender does not fail"},
		{"pushpull_push_queue_depth", nil, is(0), "the job completed"},
		{"go_goroutines", nil, atLeast(1), "the Go collector"},
		{"process_open_fds", nil, atLeast(1), "the process collector"},
	} {
		b, a := before.value(w.name, w.labels...), after.value(w.name, w.labels...)
		if b < 0 && !strings.HasPrefix(w.name, "pushpull_rest_calls") && w.name != "pushpull_rest_call_duration_seconds" {
			t.Errorf("%s%v missing before the flow", w.name, w.labels)
		}
		if b < 0 {
			b = 0 // REST series appear with their first call
		}
		if a < 0 || !w.check(b, a) {
			t.Errorf("%s%v: %v before, %v after (%s)", w.name, w.labels, b, a, w.means)
		}
	}
	if sum := after["pushpull_publish_to_socket_seconds"].GetMetric()[0].GetHistogram().GetSampleSum(); sum <= 0 {
		t.Errorf("publish_to_socket_seconds sum %v, want the time the live message took", sum)
	}
	// Families of the cluster engine exist only in cluster mode.
	if _, ok := after["pushpull_redis_healthy"]; ok {
		t.Error("pushpull_redis_healthy served by an embedded server")
	}
}
