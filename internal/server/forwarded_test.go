package server

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/testkit"
)

func TestForwardedClient(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tc := range []struct {
		peer string
		xff  []string
		want string // "" keeps the peer
	}{
		{"192.0.2.9:4000", []string{"198.51.100.7"}, ""},                           // an untrusted peer names no one
		{"10.1.1.1:4000", nil, ""},                                                 // a proxy that names no one
		{"10.1.1.1:4000", []string{"198.51.100.7"}, "198.51.100.7"},                // one proxy
		{"10.1.1.1:4000", []string{"203.0.113.5, 198.51.100.7"}, "198.51.100.7"},   // the left one is the client's own claim
		{"10.1.1.1:4000", []string{"198.51.100.7, 10.2.2.2"}, "198.51.100.7"},      // two proxies of ours
		{"10.1.1.1:4000", []string{"198.51.100.7", "10.2.2.2"}, "198.51.100.7"},    // the same over two headers
		{"10.1.1.1:4000", []string{"10.3.3.3, 10.2.2.2"}, "10.3.3.3"},              // only proxies: the farthest
		{"10.1.1.1:4000", []string{"198.51.100.7, garbage, 10.2.2.2"}, "10.2.2.2"}, // nothing beyond a bad hop
		{"10.1.1.1:4000", []string{"garbage"}, ""},
		{"[2001:db8::1]:4000", []string{"2001:db8:1::5, 2001:db8::2"}, "2001:db8:1::5"},
		{"[::ffff:10.1.1.1]:4000", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
	} {
		r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got, ok := forwardedClient(r, trusted)
		if tc.want == "" {
			if ok {
				t.Errorf("peer %s, %q: client %s; want the peer kept", tc.peer, tc.xff, got)
			}
			continue
		}
		if !ok || got.String() != tc.want {
			t.Errorf("peer %s, %q: client %s, %v; want %s", tc.peer, tc.xff, got, ok, tc.want)
		}
	}
}

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
