package console

import (
	"context"
	"errors"
	"net/http"

	"github.com/pushpull/pushpull/internal/tenant"
)

// TenantRemover stops serving a shared-mode tenant: it deletes it from the
// registry and cuts its connections on this node, other nodes following on
// their next reload (tenant.Directory.Remove, which `pushpull tenant
// remove` reaches through the registry). An unknown tenant is
// tenant.ErrUnknown.
type TenantRemover interface {
	Remove(ctx context.Context, clientID, host string) error
}

// tenantsShown bounds the tenant list; the count covers them all.
const tenantsShown = 500

// tenantView is a tenant without its key: the key is derived from the
// server's own and is the portal's secret.
type tenantView struct {
	ClientID string `json:"clientId"`
	Host     string `json:"host"`
	Origin   string `json:"origin"`
	Created  int64  `json:"created"`
}

// listTenants fills v's tenant fields in shared mode.
func (c *Console) listTenants(ctx context.Context, v *registryView) error {
	if c.opt.Tenants == nil {
		v.Mode = "personal"
		return nil
	}
	v.Mode = "shared"
	list, err := c.opt.Store.ListTenants(ctx)
	if err != nil {
		return err
	}
	v.TenantsTotal = len(list)
	v.Tenants = make([]tenantView, 0, min(len(list), tenantsShown))
	for _, t := range list[:min(len(list), tenantsShown)] {
		v.Tenants = append(v.Tenants, tenantView{ClientID: t.ClientID, Host: t.Host, Origin: t.Origin, Created: unixMilli(t.CreatedAt)})
	}
	return nil
}

// serveRemoveTenant stops serving a tenant, as `pushpull tenant remove`
// does: its connections here are cut at once (close 4036), its requests
// refused from then on.
func (c *Console) serveRemoveTenant(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ClientID string `json:"clientId"`
		Host     string `json:"host"`
	}
	if err := decodeJSON(r, &in); err != nil {
		badRequest(w, err.Error())
		return
	}
	if c.opt.Tenants == nil {
		writeError(w, http.StatusConflict, "NOT_SHARED", "the server runs in personal mode: it has no tenants")
		return
	}
	if !tenant.ValidClientID(in.ClientID) || !tenant.ValidHost(in.Host) {
		badRequest(w, "clientId and host: a tenant's, as the list shows them")
		return
	}
	err := c.opt.Tenants.Remove(r.Context(), in.ClientID, in.Host)
	if errors.Is(err, tenant.ErrUnknown) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no tenant has this client id and host")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, "REGISTRY_ERROR", err.Error())
		return
	}
	c.opt.Log.Info("console: tenant removed", "client_id", in.ClientID, "host", in.Host, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"removed": true})
}
