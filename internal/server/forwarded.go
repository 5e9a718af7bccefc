package server

import (
	"net/http"
	"net/netip"
	"strings"
)

// forwardedFor makes a request behind a trusted reverse proxy carry its
// client's address in RemoteAddr, so that per-address limits (client
// publishing on /pubweb/, large bodies at once) and logs see clients, not
// the proxy, which would otherwise put every client in one bucket.
//
// The client is the right-most X-Forwarded-For address that is not itself
// a trusted proxy: each proxy appends the address it received from, so
// addresses to the left of the first untrusted one were written by whoever
// sent the request and prove nothing. A request from an untrusted peer
// keeps its own address, whatever headers it sends.
func forwardedFor(trusted []netip.Prefix, h http.Handler) http.Handler {
	if len(trusted) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if client, ok := forwardedClient(r, trusted); ok {
			r2 := *r
			r2.RemoteAddr = netip.AddrPortFrom(client, 0).String()
			r = &r2
		}
		h.ServeHTTP(w, r)
	})
}

// forwardedClient returns the client a trusted proxy names for r, or false
// when r's peer is not a trusted proxy or names no one usable.
func forwardedClient(r *http.Request, trusted []netip.Prefix) (netip.Addr, bool) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !isTrusted(peer.Addr().Unmap(), trusted) {
		return netip.Addr{}, false
	}
	values := r.Header.Values("X-Forwarded-For")
	var client netip.Addr
	for i := len(values) - 1; i >= 0; i-- {
		hops := strings.Split(values[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[j]))
			if err != nil {
				// A hop a proxy would not write: what lies beyond it
				// cannot be trusted, so the last good hop is the client.
				return client, client.IsValid()
			}
			client = a.Unmap()
			if !isTrusted(client, trusted) {
				return client, true
			}
		}
	}
	return client, client.IsValid()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
