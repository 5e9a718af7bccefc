package realtime

// Shared mode (docs/shared-mode.md): one server for many portals. Every
// route resolves the request's tenant first (clientId and Host); the rest of
// the server then reads it from the request's context: its signer checks
// signatures, and its Scope moves the channel ids it names into its own
// namespace, so that no request of one portal reaches another's channels,
// history, presence or users.

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/tenant"
)

// Shared mode's numbered errors, with Push server 2.x's codes and texts.
var (
	errEmptyRequest      = &protoError{4022, "Empty request."}
	errVerificationQuery = &protoError{4024, "A verification query is required."}
	errClientIDRequired  = &protoError{4025, "Client Id is required."}
	errBadJSONRequest    = &protoError{4032, "Bad JSON request."}
	errNoMethodProperty  = &protoError{4033, "JSON object doesn't have 'method' property."}
	errNoParamsProperty  = &protoError{4034, "JSON object doesn't have 'params' property."}
	errUnknownCommand    = &protoError{4035, "Unknown command."}
	errWrongClientID     = &protoError{4036, "Wrong Client Id."}
)

// errTenantsUnavailable answers (503) a request whose tenant could not be
// looked up: the registry failed, not the request.
const errTenantsUnavailable = "Tenants are unavailable."

type tenantKey struct{}

// tenantFrom is the request's tenant; nil in personal mode.
func tenantFrom(ctx context.Context) *tenant.Tenant {
	t, _ := ctx.Value(tenantKey{}).(*tenant.Tenant)
	return t
}

// withTenant resolves the tenant of a request on a route that needs one
// and returns the request carrying it. In personal mode, and on routes that
// need none (refusal nil), r is returned as it is. On failure it has
// answered with refusal, the route's code for a missing or unknown client
// id.
//
// homeIfNone takes a request without clientId as the home portal's: the
// official clients send none with a client publish over HTTP (their
// publication path carries CHANNEL_ID only), and Push server 2.x then
// checks signatures with its own key, which is the home portal's.
func (s *Server) withTenant(w http.ResponseWriter, r *http.Request, refusal *protoError, homeIfNone bool) (*http.Request, bool) {
	if s.opt.Tenants == nil || refusal == nil || r.Method == http.MethodOptions {
		return r, true
	}
	clientID := queryParam(r.URL.RawQuery, "clientId")
	if clientID == "" && homeIfNone && s.opt.Tenants.Home() != nil {
		clientID = s.opt.Tenants.Home().ClientID
	}
	t, err := s.opt.Tenants.Lookup(r.Context(), clientID, tenant.NormalizeHost(r.Host))
	switch {
	case err == nil:
		return r.WithContext(context.WithValue(r.Context(), tenantKey{}, t)), true
	case err == tenant.ErrUnknown:
		s.log.Debug("request refused: no such tenant", "remote", r.RemoteAddr, "path", r.URL.Path)
		writeError(w, refusal)
	default:
		s.log.Error("tenant lookup failed", "err", err)
		writeText(w, http.StatusServiceUnavailable, errTenantsUnavailable)
	}
	return r, false
}

// signerOf is the signer that checks the signatures of ctx's request.
func (s *Server) signerOf(ctx context.Context) *channel.Signer {
	if t := tenantFrom(ctx); t != nil {
		return t.Signer()
	}
	return s.signer
}

// tenantSigned checks a backend request's signature param against data
// with the tenant's key (shared mode only); on failure it has answered
// 4026.
func (s *Server) tenantSigned(w http.ResponseWriter, r *http.Request, data string) bool {
	t := tenantFrom(r.Context())
	if t == nil || t.Signer().Verify(data, r.URL.Query().Get("signature")) {
		return true
	}
	s.log.Debug("request refused: bad tenant signature", "remote", r.RemoteAddr, "client_id", t.ClientID)
	writeError(w, errWrongSignature)
	return false
}

// scopeID maps a channel id ctx's tenant names to the server's channel, and
// a server channel back to the tenant's id (Scope is its own inverse).
func scopeID(ctx context.Context, id channel.ID) channel.ID {
	if t := tenantFrom(ctx); t != nil {
		return t.Scope(id)
	}
	return id
}

// scopeElements scopes parsed CHANNEL_ID elements in place.
func scopeElements(ctx context.Context, elems []channel.Element) []channel.Element {
	t := tenantFrom(ctx)
	if t == nil || !t.Scoped() {
		return elems
	}
	for i := range elems {
		elems[i].ID = t.Scope(elems[i].ID)
		if elems[i].HasPublic {
			elems[i].Public = t.Scope(elems[i].Public)
		}
	}
	return elems
}

// scopeUsers is the name version 5's users of ctx's tenant are derived
// under: the portal's hostId, inside the tenant's own name, so two portals
// with the same hostId (or one lying about it) never share users.
func scopeUsers(ctx context.Context, hostID string) string {
	t := tenantFrom(ctx)
	if t == nil || !t.Scoped() {
		return hostID
	}
	return t.ClientID + "@" + t.Host + "/" + hostID
}

// tokenKeyOf is the key version 5 connection tokens of ctx's tenant are
// signed with.
func (s *Server) tokenKeyOf(ctx context.Context) []byte {
	if t := tenantFrom(ctx); t != nil && !t.Home {
		return []byte(t.Key)
	}
	return s.tokenKey
}

// queryParam is the first value of name in a raw query, as url.Values.Get
// would give it, without parsing the whole query: the route parses it
// again anyway, and this runs on every subscribe.
func queryParam(raw, name string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(pair, "=")
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return ""
			}
			return u
		}
		return v
	}
	return ""
}
