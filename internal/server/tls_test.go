package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/testkit"
	"github.com/pushpull/pushpull/internal/tlstest"
	"github.com/pushpull/pushpull/internal/wire"
)

// tlsServer is a server on TLS listeners with an application, a user and
// a token in its registry.
type tlsServer struct {
	*testkit.Server
	srv    *Server
	ca     *tlstest.CA
	cert   tlstest.Leaf // the public listener's first certificate
	token  string
	log    *logCapture
	public string // https://127.0.0.1:PORT
}

// startTLS starts a server whose public listener serves TLS with a
// certificate of a CA made for the test; with internalTLS, the internal
// listener serves TLS with a certificate of its own. --public-url is left
// unset: the server derives it.
func startTLS(t *testing.T, internalTLS bool) *tlsServer {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	ts := &tlsServer{ca: ca, log: newLogCapture()}
	ts.cert = ca.Issue(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 90*24*time.Hour)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECRET"
	cfg.ServerVersion = 3
	cfg.TLSCert, cfg.TLSKey = ts.cert.CertFile, ts.cert.KeyFile
	if internalTLS {
		leaf := ca.Issue(t, filepath.Join(dir, "internal-cert.pem"), filepath.Join(dir, "internal-key.pem"), 90*24*time.Hour)
		cfg.InternalTLSCert, cfg.InternalTLSKey = leaf.CertFile, leaf.KeyFile
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = ln.Addr().String() // the public URL follows it
	ts.Server = startOn(t, ln, cfg, ts.log.logger(), func(s *Server) { ts.srv = s })
	ts.public = "https://" + ln.Addr().String()
	if internalTLS {
		ts.Internal = strings.Replace(ts.Internal, "http://", "https://", 1)
	}

	_, tok := appUserToken(t, ts.srv.store, false)
	ts.token = tok.AccessToken
	return ts
}

// client is an HTTPS client trusting only the test's CA, on connections of
// its own (so that it sees the certificate served now).
func (ts *tlsServer) client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   ts.ca.ClientConfig(),
		ForceAttemptHTTP2: true, // the server must still answer HTTP/1.1
	}}
}

// call posts a REST call over HTTPS and decodes the answer.
func (ts *tlsServer) call(t *testing.T, method string, form url.Values) map[string]any {
	t.Helper()
	form.Set("auth", ts.token)
	resp, err := ts.client().PostForm(ts.public+"/rest/"+method, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %v %v", method, resp.StatusCode, body, err)
	}
	return body
}

// servedSerial is the serial number of the certificate a new connection to
// base gets.
func (ts *tlsServer) servedSerial(t *testing.T, base string) string {
	t.Helper()
	resp, err := ts.client().Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET %s/healthz: %d, tls %v", base, resp.StatusCode, resp.TLS)
	}
	if resp.ProtoMajor != 1 || resp.TLS.NegotiatedProtocol == "h2" {
		t.Fatalf("GET %s/healthz: %s (ALPN %q), want HTTP/1.1 only", base, resp.Proto, resp.TLS.NegotiatedProtocol)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber.String()
}

// dialWSS subscribes over wss:// to the channels config.get named and
// returns the connection.
func (ts *tlsServer) dialWSS(t *testing.T, result map[string]any) net.Conn {
	t.Helper()
	chans := result["channels"].(map[string]any)
	ids := chans["private"].(map[string]any)["id"].(string) + "/" + chans["shared"].(map[string]any)["id"].(string)
	wsURL := result["server"].(map[string]any)["websocket_secure"].(string)
	conn, _, _, err := ws.Dialer{TLSConfig: ts.ca.ClientConfig(), Timeout: 30 * time.Second}.Dial(context.Background(), wsURL+"?CHANNEL_ID="+url.QueryEscape(ids)+"&revision=19")
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// eventOver sends an event through event.add and reads it from conn.
func (ts *tlsServer) eventOver(t *testing.T, conn net.Conn, command string) {
	t.Helper()
	if body := ts.call(t, "pull.application.event.add", url.Values{"COMMAND": {command}}); body["result"] != true {
		t.Fatalf("event.add: %v", body)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	data, err := wsutil.ReadServerText(conn)
	if err != nil {
		t.Fatalf("reading %s: %v", command, err)
	}
	frames, err := wire.ParseTextFrames(data)
	if err != nil || len(frames) != 1 || !strings.Contains(string(frames[0].Text), `"command":"`+command+`"`) {
		t.Fatalf("got %q (%v), want the event %s", data, err, command)
	}
}

// TestTLSServesHTTPSAndWSS: with --tls-cert the public listener serves REST
// over HTTPS and subscriptions over WSS, config.get names https and wss URLs
// on the listener's address, and plain HTTP is not answered there.
func TestTLSServesHTTPSAndWSS(t *testing.T) {
	ts := startTLS(t, false)
	if got, want := ts.servedSerial(t, ts.public), ts.cert.Serial.String(); got != want {
		t.Fatalf("served certificate %s, want %s", got, want)
	}

	result := ts.call(t, "pull.application.config.get", url.Values{"CACHE": {"N"}})["result"].(map[string]any)
	srv := result["server"].(map[string]any)
	host := strings.TrimPrefix(ts.public, "https://")
	for key, want := range map[string]string{
		"long_polling": "https://" + host + "/sub/", "long_pooling_secure": "https://" + host + "/sub/",
		"websocket": "wss://" + host + "/sub/", "websocket_secure": "wss://" + host + "/sub/",
		"publish": "https://" + host + "/pubweb/", "publish_secure": "https://" + host + "/pubweb/",
	} {
		if srv[key] != want {
			t.Errorf("config.get server.%s = %v, want %s", key, srv[key], want)
		}
	}

	conn := ts.dialWSS(t, result)
	if tc, ok := conn.(*tls.Conn); !ok || tc.ConnectionState().Version < tls.VersionTLS12 {
		t.Fatalf("wss connection is %T", conn)
	}
	ts.eventOver(t, conn, "overTLS")

	// Plain HTTP on the TLS port gets no REST answer.
	resp, err := http.Get("http://" + host + "/healthz")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plain HTTP on the TLS listener answered 200 %q", b)
		}
	}
	// The internal listener stays plain HTTP unless told otherwise.
	if code, body := get(t, ts.Internal+"/readyz"); code != http.StatusOK {
		t.Fatalf("internal /readyz over http: %d %q", code, body)
	}
}

// TestTLSReloadKeepsConnections: ReloadTLS (what SIGHUP calls) makes new
// connections get the renewed certificate while a WSS connection opened
// before keeps receiving; files that do not load leave the last good
// certificate in place.
func TestTLSReloadKeepsConnections(t *testing.T) {
	ts := startTLS(t, false)
	result := ts.call(t, "pull.application.config.get", url.Values{"CACHE": {"N"}})["result"].(map[string]any)
	conn := ts.dialWSS(t, result)
	ts.eventOver(t, conn, "beforeReload")

	renewed := ts.ca.Issue(t, ts.cert.CertFile, ts.cert.KeyFile, 90*24*time.Hour)
	if err := ts.srv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if got := ts.servedSerial(t, ts.public); got != renewed.Serial.String() {
		t.Fatalf("after reload new connections get serial %s, want %s", got, renewed.Serial)
	}
	// The connection from before is untouched: same certificate, still live.
	if got := conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String(); got != ts.cert.Serial.String() {
		t.Fatalf("old connection's certificate changed to %s", got)
	}
	ts.eventOver(t, conn, "afterReload")

	// A broken renewal: the previous certificate stays, and the error names
	// the file.
	if err := os.WriteFile(ts.cert.CertFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := ts.srv.ReloadTLS()
	if err == nil || !strings.Contains(err.Error(), ts.cert.CertFile) {
		t.Fatalf("reload of a broken file: %v, want an error naming %s", err, ts.cert.CertFile)
	}
	ts.log.waitFor(t, 0, "level=ERROR", "TLS certificate not reloaded", "send SIGHUP again")
	if got := ts.servedSerial(t, ts.public); got != renewed.Serial.String() {
		t.Fatalf("after a failed reload new connections get serial %s, want %s", got, renewed.Serial)
	}
	ts.eventOver(t, conn, "afterFailedReload")
}

// TestSIGHUPReloadsTLS sends the process SIGHUP while reloadOnHangup (as
// Run installs it) listens: the renewed certificate is loaded and served,
// and the process lives on.
func TestSIGHUPReloadsTLS(t *testing.T) {
	ts := startTLS(t, true)
	stop := ts.srv.reloadOnHangup()
	defer stop()
	renewed := ts.ca.Issue(t, ts.cert.CertFile, ts.cert.KeyFile, 90*24*time.Hour)
	from := ts.log.len()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ts.log.waitFor(t, from, "TLS certificate loaded", "serial="+renewed.Serial.String())
	if got := ts.servedSerial(t, ts.public); got != renewed.Serial.String() {
		t.Fatalf("after SIGHUP new connections get serial %s, want %s", got, renewed.Serial)
	}
	// The internal listener serves its own certificate, over HTTPS.
	if got := ts.servedSerial(t, ts.Internal); got == renewed.Serial.String() || got == ts.cert.Serial.String() {
		t.Fatalf("internal listener serves serial %s, the public listener's", got)
	}
	resp, err := ts.client().Get(ts.Internal + "/server-stat/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("internal /server-stat/ over https: %d", resp.StatusCode)
	}
}

// TestTLSExpiringCertificateIsWarnedAbout: an operator learns from the log
// that a certificate needs renewing, and how.
func TestTLSExpiringCertificateIsWarnedAbout(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	leaf := ca.Issue(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 24*time.Hour)
	logs := newLogCapture()
	if _, err := loadCertificate("--tls-cert", leaf.CertFile, leaf.KeyFile, logs.logger()); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, 0, "level=WARN", "TLS certificate expires soon: renew it and send SIGHUP", "serial="+leaf.Serial.String())

	if _, err := loadCertificate("--tls-cert", leaf.CertFile, filepath.Join(dir, "missing.pem"), logs.logger()); err == nil ||
		!strings.Contains(err.Error(), "--tls-cert "+leaf.CertFile) {
		t.Fatalf("missing key: %v, want an error naming the setting", err)
	}
}
