package realtime

import (
	"net/http"
	"strings"
	"time"
)

// Handler routes every push-server path, public and trusted, by prefix as
// the reference servers do, so deployments can mount the subscribe route
// under /bitrix/sub/, /subws/ and so on.
func (s *Server) Handler() http.Handler { return s.routes(true, true) }

// PublicHandler serves what clients use: subscribing and client publishing.
func (s *Server) PublicHandler() http.Handler { return s.routes(true, false) }

// TrustedHandler serves what only backends may use: /pub/ (publish to any
// channel without a signature) and the statistics.
func (s *Server) TrustedHandler() http.Handler { return s.routes(false, true) }

func (s *Server) routes(public, trusted bool) http.Handler {
	type route struct {
		prefix string
		h      http.HandlerFunc
		kind   dayKind
		counts bool // in the daily statistics
		// tenant is the refusal of a request without a known tenant
		// (shared mode); nil: the route needs none. homeIfNone takes one
		// without clientId as the home portal's (tenant.go).
		tenant     *protoError
		homeIfNone bool
	}
	var routes []route
	if public {
		for _, p := range s.opt.SubPaths {
			routes = append(routes, route{p, s.serveSub, dayPolling, true, errWrongClientID, false})
		}
		for _, p := range s.opt.PubWebPaths {
			routes = append(routes, route{p, s.servePubWeb, dayClientPublish, true, errWrongClientID, true})
		}
		if s.opt.Tenants != nil {
			for _, p := range s.opt.RegisterPaths {
				routes = append(routes, route{prefix: p, h: s.serveRegister})
			}
		}
	}
	if trusted {
		for _, p := range s.opt.PubPaths {
			routes = append(routes, route{p, s.servePub, dayPublish, true, errClientIDRequired, false})
		}
		for _, p := range s.opt.APIPaths {
			routes = append(routes, route{p, s.serveAPI, dayPublish, true, errClientIDRequired, false})
		}
		if s.opt.StatPath != "" {
			routes = append(routes, route{s.opt.StatPath, s.serveStat, 0, false, nil, false})
		}
		if s.opt.Tenants != nil {
			for _, p := range s.opt.SystemctlPaths {
				routes = append(routes, route{prefix: p, h: s.serveSystemctl})
			}
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, rt := range routes {
			if strings.HasPrefix(r.URL.Path, rt.prefix) {
				if rt.counts && r.Method != http.MethodOptions {
					s.countRequest(r, rt.kind)
				}
				r, ok := s.withTenant(w, r, rt.tenant, rt.homeIfNone)
				if !ok {
					return
				}
				rt.h(w, r)
				return
			}
		}
		writeText(w, http.StatusNotFound, "")
	})
}

func (s *Server) countRequest(r *http.Request, k dayKind) {
	if k == dayPolling && isUpgrade(r) {
		k = dayWebSocket
	}
	s.daily.count(time.Now(), k)
}
