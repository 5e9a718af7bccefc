package clientaddr

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestForwarded(t *testing.T) {
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
		got, ok := Forwarded(r, trusted)
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

func TestKey(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.9:4000":           "192.0.2.9/32",
		"[::ffff:192.0.2.9]:4000":  "192.0.2.9/32",
		"[2001:db8:1:2::5]:4000":   "2001:db8:1:2::/64",
		"[2001:db8:1:2:ff::9]:443": "2001:db8:1:2::/64",
		"@unix":                    "",
		"":                         "",
	} {
		got, ok := Key(remote)
		if (want == "") == ok || (ok && got.String() != want) {
			t.Errorf("Key(%q) = %v, %v; want %q", remote, got, ok, want)
		}
	}
}
