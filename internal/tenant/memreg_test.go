package tenant

import (
	"context"
	"sort"
	"sync"

	"github.com/pushpull/pushpull/internal/store"
)

// memRegistry is store.Tenants in memory, for benchmarks that load many
// tenants without a database's cost.
type memRegistry struct {
	mu      sync.Mutex
	tenants map[[2]string]store.Tenant
	version int64
}

func newMemRegistry() *memRegistry { return &memRegistry{tenants: map[[2]string]store.Tenant{}} }

func (m *memRegistry) PutTenant(_ context.Context, t store.Tenant) (store.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{t.ClientID, t.Host}
	if old, ok := m.tenants[k]; ok {
		t.CreatedAt = old.CreatedAt
	}
	m.tenants[k] = t
	m.version++
	return t, nil
}

func (m *memRegistry) Tenant(_ context.Context, clientID, host string) (store.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tenants[[2]string{clientID, host}]
	if !ok {
		return store.Tenant{}, store.ErrNotFound
	}
	return t, nil
}

func (m *memRegistry) ListTenants(context.Context) ([]store.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	list := make([]store.Tenant, 0, len(m.tenants))
	for _, t := range m.tenants {
		list = append(list, t)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ClientID+list[i].Host < list[j].ClientID+list[j].Host })
	return list, nil
}

func (m *memRegistry) DeleteTenant(_ context.Context, clientID, host string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{clientID, host}
	if _, ok := m.tenants[k]; !ok {
		return store.ErrNotFound
	}
	delete(m.tenants, k)
	m.version++
	return nil
}

func (m *memRegistry) TenantsVersion(context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version, nil
}
