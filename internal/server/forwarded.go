package server

import (
	"net/http"
	"net/netip"

	"github.com/pushpull/pushpull/internal/clientaddr"
)

// forwardedFor makes a request behind a trusted reverse proxy carry its
// client's address in RemoteAddr, so that per-address limits (client
// publishing on /pubweb/, large bodies at once) and logs see clients, not
// the proxy, which would otherwise put every client in one bucket.
//
// The client is the one clientaddr.Forwarded names; a request from an
// untrusted peer keeps its own address, whatever headers it sends.
func forwardedFor(trusted []netip.Prefix, h http.Handler) http.Handler {
	if len(trusted) == 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if client, ok := clientaddr.Forwarded(r, trusted); ok {
			r2 := *r
			r2.RemoteAddr = netip.AddrPortFrom(client, 0).String()
			r = &r2
		}
		h.ServeHTTP(w, r)
	})
}
