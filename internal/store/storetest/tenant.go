package storetest

import (
	"slices"
	"testing"

	"github.com/pushpull/pushpull/internal/store"
)

// testTenants: put creates and then updates (keeping CreatedAt), lookups are
// by the exact pair, the listing is ordered, delete of an unknown tenant is
// ErrNotFound, and every change moves the version.
func testTenants(t *testing.T, s store.Store) {
	ctx := t.Context()
	const a, b = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	v0, err := s.TenantsVersion(ctx)
	if err != nil {
		t.Fatalf("TenantsVersion: %v", err)
	}
	if _, err := s.Tenant(ctx, a, "push.example.com"); err == nil {
		t.Fatal("Tenant of an empty registry: no error")
	} else {
		wantNotFound(t, "Tenant", err)
	}
	first, err := s.PutTenant(ctx, store.Tenant{ClientID: a, Host: "push.example.com", Origin: store.TenantRegistered, CreatedAt: epoch})
	if err != nil {
		t.Fatalf("PutTenant: %v", err)
	}
	if !first.CreatedAt.Equal(epoch) || first.Origin != store.TenantRegistered {
		t.Fatalf("PutTenant returned %+v", first)
	}
	v1, err := s.TenantsVersion(ctx)
	if err != nil || v1 == v0 {
		t.Fatalf("version after put: %d (before %d), %v", v1, v0, err)
	}
	again, err := s.PutTenant(ctx, store.Tenant{ClientID: a, Host: "push.example.com", Origin: store.TenantOperator, CreatedAt: epoch.AddDate(1, 0, 0)})
	if err != nil {
		t.Fatalf("PutTenant again: %v", err)
	}
	if !again.CreatedAt.Equal(epoch) || again.Origin != store.TenantOperator {
		t.Fatalf("second PutTenant returned %+v, want CreatedAt kept and origin updated", again)
	}
	for _, tn := range []store.Tenant{
		{ClientID: a, Host: "other.example.com", Origin: store.TenantOperator},
		{ClientID: b, Host: "push.example.com", Origin: store.TenantRegistered},
	} {
		if _, err := s.PutTenant(ctx, tn); err != nil {
			t.Fatalf("PutTenant %+v: %v", tn, err)
		}
	}
	got, err := s.Tenant(ctx, a, "push.example.com")
	if err != nil || got.Origin != store.TenantOperator || !got.CreatedAt.Equal(epoch) {
		t.Fatalf("Tenant = %+v, %v", got, err)
	}
	if _, err := s.Tenant(ctx, b, "other.example.com"); err == nil {
		t.Fatal("Tenant of a pair never put: no error")
	} else {
		wantNotFound(t, "Tenant", err)
	}
	list, err := s.ListTenants(ctx)
	if err != nil {
		t.Fatalf("ListTenants: %v", err)
	}
	var pairs []string
	for _, tn := range list {
		pairs = append(pairs, tn.ClientID+"@"+tn.Host)
	}
	want := []string{a + "@other.example.com", a + "@push.example.com", b + "@push.example.com"}
	if !slices.Equal(pairs, want) {
		t.Fatalf("ListTenants = %v, want %v", pairs, want)
	}

	v2, _ := s.TenantsVersion(ctx)
	if err := s.DeleteTenant(ctx, a, "push.example.com"); err != nil {
		t.Fatalf("DeleteTenant: %v", err)
	}
	v3, _ := s.TenantsVersion(ctx)
	if v3 == v2 {
		t.Fatalf("version unchanged by delete: %d", v3)
	}
	if _, err := s.Tenant(ctx, a, "push.example.com"); err == nil {
		t.Fatal("Tenant after delete: no error")
	} else {
		wantNotFound(t, "Tenant after delete", err)
	}
	if err := s.DeleteTenant(ctx, a, "push.example.com"); err == nil {
		t.Fatal("second DeleteTenant: no error")
	} else {
		wantNotFound(t, "second DeleteTenant", err)
	}
	if v4, _ := s.TenantsVersion(ctx); v4 != v3 {
		t.Fatalf("a failed delete moved the version: %d -> %d", v3, v4)
	}
	if list, _ := s.ListTenants(ctx); len(list) != 2 {
		t.Fatalf("ListTenants after delete: %d tenants, want 2", len(list))
	}
}
