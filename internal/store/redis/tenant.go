package redis

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/store"
)

// --- tenants ---
//
//	tenant:<client_id>:<host>  hash: origin, created_at
//	tenants                    zset (all scores 0, so ordered by member):
//	                           "<client_id>\n<host>"
//	tenants:version            INCR on every change

// putTenantLua: KEYS[1] record, KEYS[2] index, KEYS[3] version; ARGV[1]
// index member, ARGV[2] origin, ARGV[3] created_at (kept if present).
const putTenantLua = `
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[3])
redis.call('HSET', KEYS[1], 'origin', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('INCR', KEYS[3])
return redis.call('HMGET', KEYS[1], 'origin', 'created_at')
`

const deleteTenantLua = `
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
`

func tenantMember(clientID, host string) string { return clientID + "\n" + host }

func (s *Store) tenantKeys(clientID, host string) []string {
	return []string{s.key("tenant", clientID, host), s.key("tenants"), s.key("tenants", "version")}
}

// PutTenant implements store.Tenants.
func (s *Store) PutTenant(ctx context.Context, t store.Tenant) (store.Tenant, error) {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now()
	}
	vals, err := s.putTenant.Exec(ctx, s.c, s.tenantKeys(t.ClientID, t.Host),
		[]string{tenantMember(t.ClientID, t.Host), t.Origin, itoa(store.EncodeTime(t.CreatedAt))}).AsStrSlice()
	if err != nil {
		return store.Tenant{}, fmt.Errorf("redis store: put tenant: %w", err)
	}
	f := fields{m: map[string]string{}}
	if len(vals) == 2 {
		f.m["origin"], f.m["created_at"] = vals[0], vals[1]
	}
	stored := store.Tenant{ClientID: t.ClientID, Host: t.Host, Origin: f.str("origin"), CreatedAt: f.time("created_at")}
	if f.err != nil {
		return store.Tenant{}, fmt.Errorf("redis store: put tenant: %w", f.err)
	}
	return stored, nil
}

// Tenant implements store.Tenants.
func (s *Store) Tenant(ctx context.Context, clientID, host string) (store.Tenant, error) {
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.key("tenant", clientID, host)).Build()).AsStrMap()
	if err != nil {
		return store.Tenant{}, fmt.Errorf("redis store: tenant %s@%s: %w", clientID, host, err)
	}
	if len(m) == 0 {
		return store.Tenant{}, fmt.Errorf("redis store: tenant %s@%s: %w", clientID, host, store.ErrNotFound)
	}
	return parseTenant(clientID, host, m)
}

func parseTenant(clientID, host string, m map[string]string) (store.Tenant, error) {
	f := fields{m: m}
	t := store.Tenant{ClientID: clientID, Host: host, Origin: f.str("origin"), CreatedAt: f.time("created_at")}
	if f.err != nil {
		return store.Tenant{}, fmt.Errorf("redis store: tenant %s@%s: %w", clientID, host, f.err)
	}
	return t, nil
}

// ListTenants implements store.Tenants.
func (s *Store) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	members, err := s.c.Do(ctx, s.c.B().Zrange().Key(s.key("tenants")).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("redis store: list tenants: %w", err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	type pair struct{ clientID, host string }
	pairs := make([]pair, 0, len(members))
	cmds := make(rueidis.Commands, 0, len(members))
	for _, mem := range members {
		clientID, host, ok := strings.Cut(mem, "\n")
		if !ok {
			return nil, fmt.Errorf("redis store: list tenants: corrupt index member %q", mem)
		}
		pairs = append(pairs, pair{clientID, host})
		cmds = append(cmds, s.c.B().Hgetall().Key(s.key("tenant", clientID, host)).Build())
	}
	list := make([]store.Tenant, 0, len(members))
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		m, err := r.AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("redis store: list tenants: %w", err)
		}
		if len(m) == 0 {
			continue // deleted between the two reads
		}
		t, err := parseTenant(pairs[i].clientID, pairs[i].host, m)
		if err != nil {
			return nil, err
		}
		list = append(list, t)
	}
	return list, nil
}

// DeleteTenant implements store.Tenants.
func (s *Store) DeleteTenant(ctx context.Context, clientID, host string) error {
	n, err := s.deleteTenant.Exec(ctx, s.c, s.tenantKeys(clientID, host), []string{tenantMember(clientID, host)}).AsInt64()
	if err != nil {
		return fmt.Errorf("redis store: delete tenant: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("redis store: delete tenant %s@%s: %w", clientID, host, store.ErrNotFound)
	}
	return nil
}

// TenantsVersion implements store.Tenants.
func (s *Store) TenantsVersion(ctx context.Context) (int64, error) {
	v, err := s.c.Do(ctx, s.c.B().Get().Key(s.key("tenants", "version")).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("redis store: tenants version: %w", err)
	}
	return v, nil
}
