// Package redis is the registry (store.Store) on Redis, for cluster mode:
// every node talks to the same Redis and sees the same apps, tokens and
// channels. It passes the same conformance suite as the SQLite store.
//
// # Key layout
//
// Every key is built by redisconn.Keys under the registry's prefix and a
// "reg" segment, so all of them carry the prefix's hash tag (one Redis
// Cluster slot, which the Lua scripts need) and never collide with the
// broker's keys under the same prefix. Below, "{p}:reg:" is left out.
//
//	version                       layout version ("1"); Open refuses newer ones
//	seq:portal|app|webhook|push   INCR counters: ids unique across nodes
//	portal:default                hash: the default portal
//	app:<client_id>               hash: one application
//	apps:<portal_id>              zset: client_ids scored by app id, so that
//	                              listing is in creation order and an app id
//	                              resolves to its client_id within its portal
//	user:<portal_id>:<user_id>    hash: active, admin, created_at
//	token:<sha256(access)>        hash: one token pair (refresh_hash, ...)
//	refresh:<sha256(refresh)>     string: the pair's access hash
//	code:<sha256(code)>           hash: one authorization code
//	webhook:<user_id>:<sha256(secret)>  hash: one webhook
//	chan:<portal>:<app>:<user>:<type>   hash: the channel of that key
//	push:due                      zset by lex: "<next attempt>:<id>"
//	push:member|payload|attempts|created  hashes by job id
//	tenant:<client_id>:<host>     hash: one shared-mode tenant (tenant.go)
//	tenants, tenants:version      zset of all tenants; change counter
//
// Records are hashes of decimal strings. Times are Unix nanoseconds like in
// the SQLite store (0 = zero time), so they round-trip exactly; scope lists
// are comma-joined. Secrets are stored only as store.HashSecret hashes,
// client secrets included (client_secret_hash); apps written by builds that
// kept the plain client_secret are converted when the registry is opened.
//
// Anything that must be decided once across nodes runs in one Lua script on
// keys passed as KEYS (never built inside the script, so that a cluster can
// route it): id allocation with the insert, uniqueness checks, revoking on
// refresh rotation, consuming a code, channel replacement and push leases.
// Lua numbers are doubles, which cannot hold nanosecond timestamps exactly,
// so time comparisons happen either in Go before a compare-and-set (channels,
// codes: the compared value does not change under the script) or on
// fixed-width decimal strings (the push queue's lexicographic zset).
//
// # Expiry
//
// Tokens and authorization codes get a Redis expiry 24 hours after the later
// of their last expiry (refresh expiry for tokens) and the time they were
// stored, so the registry does not grow forever while a lookup of an expired
// or revoked token still finds it for a day, long enough to answer
// "expired" rather than "invalid". Records without an expiry are kept.
// Channels, apps, users, webhooks and the default portal never expire: an
// expired channel must still be found so that its replacement is reported
// and subscribers get channel_expire.
package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/redisconn"
	"github.com/pushpull/pushpull/internal/store"
)

// layoutVersion is the key layout this build reads and writes. Bump it (and
// migrate) when a released layout changes.
const layoutVersion = "1"

// retention is how long tokens and codes outlive their expiry in Redis.
const retention = 24 * time.Hour

// maxCASRounds bounds the read/compare-and-set loop of channel replacement.
// A round only fails when another node replaced the channel in between, so
// more than two rounds means clocks far apart or a channel TTL near zero.
const maxCASRounds = 8

// Store is the Redis registry. It is safe for concurrent use, also by many
// processes on the same Redis and prefix.
type Store struct {
	c      rueidis.Client
	keys   redisconn.Keys
	domain string

	portal, createApp, createToken, rotate, revoke *rueidis.Lua
	putUser                                        *rueidis.Lua
	createCode, useCode, createWebhook, channelCAS *rueidis.Lua
	enqueue, claim, complete, retry                *rueidis.Lua
	putTenant, deleteTenant                        *rueidis.Lua
}

var _ store.Store = (*Store)(nil)

// Open returns the registry stored in client's Redis under prefix ("" means
// redisconn.DefaultPrefix); domain is the default portal's domain. The
// client stays the caller's: Close does not close it, as the broker shares
// it.
func Open(ctx context.Context, client rueidis.Client, prefix, domain string) (*Store, error) {
	s := &Store{
		c:             client,
		keys:          redisconn.NewKeys(prefix),
		domain:        domain,
		portal:        rueidis.NewLuaScript(portalLua),
		createApp:     rueidis.NewLuaScript(createAppLua),
		putUser:       rueidis.NewLuaScript(putUserLua),
		createToken:   rueidis.NewLuaScript(insertTokenLua + createTokenLua),
		rotate:        rueidis.NewLuaScript(insertTokenLua + rotateLua),
		revoke:        rueidis.NewLuaScript(revokeLua),
		createCode:    rueidis.NewLuaScript(createCodeLua),
		useCode:       rueidis.NewLuaScript(useCodeLua),
		createWebhook: rueidis.NewLuaScript(createWebhookLua),
		channelCAS:    rueidis.NewLuaScript(channelCASLua),
		enqueue:       rueidis.NewLuaScript(enqueueLua),
		claim:         rueidis.NewLuaScript(claimLua),
		complete:      rueidis.NewLuaScript(completeLua),
		retry:         rueidis.NewLuaScript(retryLua),
		putTenant:     rueidis.NewLuaScript(putTenantLua),
		deleteTenant:  rueidis.NewLuaScript(deleteTenantLua),
	}
	vk := s.key("version")
	res := client.DoMulti(ctx,
		client.B().Set().Key(vk).Value(layoutVersion).Nx().Build(),
		client.B().Get().Key(vk).Build())
	if err := res[0].Error(); err != nil && !rueidis.IsRedisNil(err) {
		return nil, fmt.Errorf("redis store: open: %w", err)
	}
	v, err := res[1].ToString()
	if err != nil {
		return nil, fmt.Errorf("redis store: open: layout version: %w", err)
	}
	if v != layoutVersion {
		return nil, fmt.Errorf("redis store: open: key layout version %q is not this build's %q", v, layoutVersion)
	}
	if err := s.hashClientSecrets(ctx); err != nil {
		return nil, fmt.Errorf("redis store: open: %w", err)
	}
	return s, nil
}

// Close implements store.Store. It releases nothing: the client belongs to
// the caller.
func (s *Store) Close() error { return nil }

func (s *Store) key(parts ...string) string {
	return s.keys.Key(append([]string{"reg"}, parts...)...)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// --- portal ---

const portalLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  local id = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], 'id', id, 'member_id', ARGV[1], 'domain', ARGV[2], 'created_at', ARGV[3])
elseif ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'domain') ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'domain', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'id', 'member_id', 'domain', 'created_at')
`

// DefaultPortal implements store.Store. Creation and the domain update run
// in one script, so racing nodes create one portal; like the SQLite store, a
// node opened with another domain updates it and member_id stays.
func (s *Store) DefaultPortal(ctx context.Context) (store.Portal, error) {
	member, err := store.NewChannelID() // same shape: 32 hex
	if err != nil {
		return store.Portal{}, fmt.Errorf("redis store: default portal: %w", err)
	}
	vals, err := s.portal.Exec(ctx, s.c,
		[]string{s.key("portal", "default"), s.key("seq", "portal")},
		[]string{member, s.domain, itoa(store.EncodeTime(time.Now()))}).AsStrSlice()
	if err != nil {
		return store.Portal{}, fmt.Errorf("redis store: default portal: %w", err)
	}
	if len(vals) != 4 {
		return store.Portal{}, fmt.Errorf("redis store: default portal: script returned %d values", len(vals))
	}
	p := store.Portal{MemberID: vals[1], Domain: vals[2]}
	var created int64
	if p.ID, err = strconv.ParseInt(vals[0], 10, 64); err == nil {
		created, err = strconv.ParseInt(vals[3], 10, 64)
	}
	if err != nil {
		return store.Portal{}, fmt.Errorf("redis store: default portal: corrupt record: %w", err)
	}
	p.CreatedAt = store.DecodeTime(created)
	return p, nil
}
