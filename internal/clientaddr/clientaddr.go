// Package clientaddr says who a request's client is: the address a trusted
// reverse proxy forwarded for, and the key under which per-client limits
// count it.
package clientaddr

import (
	"net/http"
	"net/netip"
	"strings"
)

// Key is the address per-client limits count remote (a RemoteAddr,
// "host:port") under: an IPv4 address, or the IPv6 /64 it is in, as an IPv6
// client usually holds a whole /64. false when remote is not an address.
func Key(remote string) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Prefix{}, false
	}
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// Forwarded returns the client a trusted proxy names for r, or false when
// r's peer is not a trusted proxy or names no one usable.
//
// The client is the right-most X-Forwarded-For address that is not itself
// a trusted proxy: each proxy appends the address it received from, so
// addresses to the left of the first untrusted one were written by whoever
// sent the request and prove nothing.
func Forwarded(r *http.Request, trusted []netip.Prefix) (netip.Addr, bool) {
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
