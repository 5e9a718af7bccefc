package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/testkit"
)

// Behind a trusted proxy the server's log lines, and with them its
// per-address limits, name the client the proxy forwarded for; from any
// other peer the header changes nothing.
func TestTrustedProxyNamesTheClient(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
		want    string
	}{
		{"trusted", []string{"127.0.0.0/8"}, `remote=198.51.100.7:0`},
		{"untrusted", []string{"192.0.2.0/24"}, `remote=127.0.0.1:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := newLogCapture()
			cfg := consoleConfig(t, "")
			cfg.TrustedProxies = tc.trusted
			r := startOn(t, testkit.Listen(t), cfg, logs.logger(), nil)
			req, err := http.NewRequest("POST", r.URL+"/oauth/token/", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Forwarded-For", "198.51.100.7")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			line := logs.waitFor(t, 0, "oauth token request")
			if !strings.Contains(line, tc.want) {
				t.Fatalf("log line %q; want %s", line, tc.want)
			}
		})
	}
}
