package store

import (
	"context"
	"time"
)

// Tenant is one portal served in shared mode (docs/shared-mode.md): the
// pair of its public licence hash (ClientID) and the host name it reaches
// the server by. Its signing key is not stored: it is derived from the
// server's key each time (package tenant), so a copied registry hands out
// no working key.
type Tenant struct {
	ClientID string
	Host     string
	// Origin is how the tenant came: TenantRegistered (POST
	// /register-client/) or TenantOperator (pushpull tenant add).
	Origin string
	// CreatedAt is when the tenant was first stored; a later put keeps it.
	CreatedAt time.Time
}

// Tenant origins.
const (
	TenantRegistered = "register"
	TenantOperator   = "operator"
)

// Tenants is the part of the registry shared mode uses. Every change bumps
// a version number, so that servers that cache the tenants (every node of a
// cluster, and the server while the operator CLI edits its registry.db)
// notice a change with one cheap read.
type Tenants interface {
	// PutTenant creates the tenant or updates its Origin; CreatedAt is kept
	// from the first put (now if zero). The stored record is returned.
	PutTenant(ctx context.Context, t Tenant) (Tenant, error)
	// Tenant returns the tenant (clientID, host), or ErrNotFound.
	Tenant(ctx context.Context, clientID, host string) (Tenant, error)
	// ListTenants returns every tenant, ordered by client id, then host.
	ListTenants(ctx context.Context) ([]Tenant, error)
	// DeleteTenant removes the tenant; unknown -> ErrNotFound.
	DeleteTenant(ctx context.Context, clientID, host string) error
	// TenantsVersion changes whenever a tenant is put or deleted.
	TenantsVersion(ctx context.Context) (int64, error)
}
