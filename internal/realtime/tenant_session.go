package realtime

// A session's ties to its portal in shared mode (tenant.go): it is cut when
// the portal is unregistered, and its frames name channels as the portal
// knows them.

import (
	"context"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/tenant"
)

// bindTenant ties a new session to ctx's tenant: it is cut when the tenant
// is unregistered, and its text frames name channels by the ids its
// tenant knows. Frames are cached per delivery and format; every
// subscriber of a scoped channel is of the same tenant, so the cached
// frame is right for all of them. Version 5 and protobuf frames name no
// channel a client sees.
func bindTenant(ctx context.Context, sess *session) {
	t := tenantFrom(ctx)
	if t == nil {
		return
	}
	sess.tenant = t
	// The publisher id is only ever shown, as the sender of what the
	// connection publishes: the id the tenant knows.
	if sess.hasPublic {
		// Without one it stays zero: a mask must never reach a client.
		sess.publisher = t.Scope(sess.publisher)
	}
	if !t.Scoped() || (sess.format.slot != formatText.slot && sess.format.slot != formatJSON.slot) {
		return
	}
	sess.format = sess.srv.tenantFormat(t, sess.format)
}

// tenantFormat is f for the connections of the scoped tenant t: its
// encoder names channels by the ids t knows. One is made per tenant and
// format, and dropped with the tenant (cutTenant).
func (s *Server) tenantFormat(t *tenant.Tenant, f format) format {
	k := tenantFormatKey{t, f.slot}
	if v, ok := s.tenantFormats.Load(k); ok {
		return v.(format)
	}
	base := f.encode
	f.encode = func(dst []byte, m *message.Message, ch channel.ID) []byte {
		return base(dst, m, t.Scope(ch))
	}
	v, _ := s.tenantFormats.LoadOrStore(k, f)
	return v.(format)
}

type tenantFormatKey struct {
	t    *tenant.Tenant
	slot int
}

// forgetTenantFormats drops the formats made for t, which is no longer
// served.
func (s *Server) forgetTenantFormats(t *tenant.Tenant) {
	s.tenantFormats.Delete(tenantFormatKey{t, formatText.slot})
	s.tenantFormats.Delete(tenantFormatKey{t, formatJSON.slot})
}
