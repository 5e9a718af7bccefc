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

// --- apps ---

const createAppLua = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local id = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'id', id, 'portal_id', ARGV[2], 'client_id', ARGV[1], 'client_secret_hash', ARGV[3],
  'name', ARGV[4], 'scopes', ARGV[5], 'created_at', ARGV[6])
redis.call('ZADD', KEYS[2], id, ARGV[1])
return id
`

// CreateApp implements store.Store.
func (s *Store) CreateApp(ctx context.Context, portalID int64, name string, scopes []string) (store.App, error) {
	a := store.App{PortalID: portalID, Name: name, Scopes: store.CloneScopes(scopes), CreatedAt: roundTrip(time.Now())}
	var err error
	if a.ClientID, err = store.NewClientID(); err != nil {
		return store.App{}, fmt.Errorf("redis store: create app: %w", err)
	}
	if a.ClientSecret, err = store.NewClientSecret(); err != nil {
		return store.App{}, fmt.Errorf("redis store: create app: %w", err)
	}
	id, err := s.createApp.Exec(ctx, s.c,
		[]string{s.key("app", a.ClientID), s.key("apps", itoa(portalID)), s.key("seq", "app")},
		[]string{a.ClientID, itoa(portalID), store.HashSecret(a.ClientSecret), a.Name, store.JoinScopes(a.Scopes), itoa(store.EncodeTime(a.CreatedAt))}).AsInt64()
	if err != nil {
		return store.App{}, fmt.Errorf("redis store: create app: %w", err)
	}
	if id == 0 {
		return store.App{}, fmt.Errorf("redis store: create app: client_id %s: %w", a.ClientID, store.ErrConflict)
	}
	a.ID = id
	a.ClientSecretHash = store.HashSecret(a.ClientSecret)
	return a, nil
}

// App implements store.Store.
func (s *Store) App(ctx context.Context, clientID string) (store.App, error) {
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.key("app", clientID)).Build()).AsStrMap()
	if err != nil {
		return store.App{}, fmt.Errorf("redis store: app %q: %w", clientID, err)
	}
	a, err := parseApp(m)
	if err != nil {
		return store.App{}, fmt.Errorf("redis store: app %q: %w", clientID, err)
	}
	return a, nil
}

// Apps implements store.Store.
func (s *Store) Apps(ctx context.Context, portalID int64) ([]store.App, error) {
	ids, err := s.c.Do(ctx, s.c.B().Zrange().Key(s.key("apps", itoa(portalID))).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("redis store: list apps: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = s.c.B().Hgetall().Key(s.key("app", id)).Build()
	}
	apps := make([]store.App, 0, len(ids))
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		m, err := r.AsStrMap()
		if err != nil {
			return nil, fmt.Errorf("redis store: list apps: %w", err)
		}
		a, err := parseApp(m)
		if err != nil {
			return nil, fmt.Errorf("redis store: list apps: %s: %w", ids[i], err)
		}
		apps = append(apps, a)
	}
	return apps, nil
}

func parseApp(m map[string]string) (store.App, error) {
	if len(m) == 0 {
		return store.App{}, store.ErrNotFound
	}
	f := fields{m: m}
	a := store.App{
		ID: f.int("id"), PortalID: f.int("portal_id"), ClientID: f.str("client_id"),
		Name: f.str("name"), Scopes: store.SplitScopes(f.str("scopes")),
		CreatedAt: f.time("created_at"),
	}
	if plain, ok := m["client_secret"]; ok {
		// Written by an older node that kept the plain secret.
		a.ClientSecretHash = store.HashSecret(plain)
	} else {
		a.ClientSecretHash = f.str("client_secret_hash")
	}
	return a, f.err
}

// hashSecretLua replaces an app's plain client secret by its hash, if the
// plain one is still the one read.
const hashSecretLua = `
if redis.call('HGET', KEYS[1], 'client_secret') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'client_secret_hash', ARGV[2])
redis.call('HDEL', KEYS[1], 'client_secret')
return 1
`

// hashClientSecrets converts the apps of the default portal that older
// builds stored with a plain client secret.
func (s *Store) hashClientSecrets(ctx context.Context) error {
	id, err := s.c.Do(ctx, s.c.B().Hget().Key(s.key("portal", "default")).Field("id").Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return nil // no portal yet, so no apps
	}
	if err != nil {
		return fmt.Errorf("hash client secrets: %w", err)
	}
	clientIDs, err := s.c.Do(ctx, s.c.B().Zrange().Key(s.key("apps", id)).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return fmt.Errorf("hash client secrets: %w", err)
	}
	script := rueidis.NewLuaScript(hashSecretLua)
	for _, cid := range clientIDs {
		k := s.key("app", cid)
		plain, err := s.c.Do(ctx, s.c.B().Hget().Key(k).Field("client_secret").Build()).ToString()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("hash client secrets: app %s: %w", cid, err)
		}
		if err := script.Exec(ctx, s.c, []string{k}, []string{plain, store.HashSecret(plain)}).Error(); err != nil {
			return fmt.Errorf("hash client secrets: app %s: %w", cid, err)
		}
	}
	return nil
}

// --- users ---

// PutUser implements store.Store. One script writes the user, keeping the
// created_at of its first put, so a reader never sees half a user.
func (s *Store) PutUser(ctx context.Context, u store.User) error {
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	k := s.key("user", itoa(u.PortalID), itoa(u.ID))
	err := s.putUser.Exec(ctx, s.c, []string{k}, []string{itoa(store.EncodeTime(u.CreatedAt)), boolStr(u.Active), boolStr(u.Admin)}).Error()
	if err != nil {
		return fmt.Errorf("redis store: put user %d: %w", u.ID, err)
	}
	return nil
}

// putUserLua writes a user in one step, keeping the first created_at:
// KEYS[1] the user, ARGV created_at, active, admin.
const putUserLua = `
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[1])
redis.call('HSET', KEYS[1], 'active', ARGV[2], 'admin', ARGV[3])
return 1
`

// User implements store.Store.
func (s *Store) User(ctx context.Context, portalID, userID int64) (store.User, error) {
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.key("user", itoa(portalID), itoa(userID))).Build()).AsStrMap()
	if err != nil {
		return store.User{}, fmt.Errorf("redis store: user %d: %w", userID, err)
	}
	if len(m) == 0 {
		return store.User{}, fmt.Errorf("redis store: user %d: %w", userID, store.ErrNotFound)
	}
	f := fields{m: m}
	u := store.User{PortalID: portalID, ID: userID, Active: f.bool("active"), Admin: f.bool("admin"), CreatedAt: f.time("created_at")}
	if f.err != nil {
		return store.User{}, fmt.Errorf("redis store: user %d: %w", userID, f.err)
	}
	return u, nil
}

// --- tokens ---

// insertTokenLua stores a pair under KEYS[1] (token hash) and KEYS[2]
// (refresh index) from ARGV[1..11]; false if either is taken.
const insertTokenLua = `
local function insert_token()
  if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return false end
  redis.call('HSET', KEYS[1], 'refresh_hash', ARGV[2], 'portal_id', ARGV[3], 'app_id', ARGV[4], 'user_id', ARGV[5],
    'scopes', ARGV[6], 'access_expires', ARGV[7], 'refresh_expires', ARGV[8], 'revoked', ARGV[9], 'created_at', ARGV[10])
  redis.call('SET', KEYS[2], ARGV[1])
  if ARGV[11] ~= '0' then
    redis.call('PEXPIREAT', KEYS[1], ARGV[11])
    redis.call('PEXPIREAT', KEYS[2], ARGV[11])
  end
  return true
end
`

const createTokenLua = `
if insert_token() then return 1 end
return 0
`

// rotateLua: KEYS[3] is the old refresh index, KEYS[4] the old pair, ARGV[12]
// the old access hash read before. Checking the index still points there
// and the pair is live, then revoking, is the single-use gate.
const rotateLua = `
if redis.call('GET', KEYS[3]) ~= ARGV[12] or redis.call('HGET', KEYS[4], 'revoked') ~= '0' then return -1 end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[4], 'revoked', '1')
insert_token()
return 1
`

const revokeLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'revoked', '1')
return 1
`

// tokenKeys and tokenArgs are insertTokenLua's KEYS[1..2] and ARGV[1..11].
func (s *Store) tokenKeys(t store.Token) []string {
	return []string{s.key("token", store.HashSecret(t.AccessToken)), s.key("refresh", store.HashSecret(t.RefreshToken))}
}

func tokenArgs(t store.Token) []string {
	return []string{
		store.HashSecret(t.AccessToken), store.HashSecret(t.RefreshToken),
		itoa(t.PortalID), itoa(t.AppID), itoa(t.UserID), store.JoinScopes(t.Scopes),
		itoa(store.EncodeTime(t.AccessExpires)), itoa(store.EncodeTime(t.RefreshExpires)), boolStr(t.Revoked), itoa(store.EncodeTime(t.CreatedAt)),
		itoa(expireAtMS(t.AccessExpires, t.RefreshExpires)),
	}
}

// expireAtMS is when a record whose last expiry is the later of ts may leave
// Redis, as PEXPIREAT milliseconds; 0 = keep (no expiry set). Counting from
// now as well keeps records stored with past expiries (clock skew, tests)
// for the whole retention.
func expireAtMS(ts ...time.Time) int64 {
	var last time.Time
	for _, t := range ts {
		if t.After(last) {
			last = t
		}
	}
	if last.IsZero() {
		return 0
	}
	if now := time.Now(); now.After(last) {
		last = now
	}
	return last.Add(retention).UnixMilli()
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) (store.Token, error) {
	t, err := store.FillToken(t)
	if err != nil {
		return store.Token{}, fmt.Errorf("redis store: create token: %w", err)
	}
	ok, err := s.createToken.Exec(ctx, s.c, s.tokenKeys(t), tokenArgs(t)).AsInt64()
	if err != nil {
		return store.Token{}, fmt.Errorf("redis store: create token: %w", err)
	}
	if ok == 0 {
		return store.Token{}, fmt.Errorf("redis store: create token: %w", store.ErrConflict)
	}
	return t, nil
}

func (s *Store) tokenByHash(ctx context.Context, accessHash string) (store.Token, error) {
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.key("token", accessHash)).Build()).AsStrMap()
	if err != nil {
		return store.Token{}, err
	}
	if len(m) == 0 {
		return store.Token{}, store.ErrNotFound
	}
	f := fields{m: m}
	t := store.Token{
		PortalID: f.int("portal_id"), AppID: f.int("app_id"), UserID: f.int("user_id"),
		Scopes:        store.SplitScopes(f.str("scopes")),
		AccessExpires: f.time("access_expires"), RefreshExpires: f.time("refresh_expires"),
		Revoked: f.bool("revoked"), CreatedAt: f.time("created_at"),
	}
	return t, f.err
}

// TokenByAccess implements store.Store. RefreshToken is left empty.
func (s *Store) TokenByAccess(ctx context.Context, access string) (store.Token, error) {
	t, err := s.tokenByHash(ctx, store.HashSecret(access))
	if err != nil {
		return store.Token{}, fmt.Errorf("redis store: token by access: %w", err)
	}
	t.AccessToken = access
	return t, nil
}

// refreshIndex returns the access hash the refresh token's index points to.
func (s *Store) refreshIndex(ctx context.Context, refresh string) (string, error) {
	h, err := s.c.Do(ctx, s.c.B().Get().Key(s.key("refresh", store.HashSecret(refresh))).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", store.ErrNotFound
	}
	return h, err
}

// TokenByRefresh implements store.Store. AccessToken is left empty.
func (s *Store) TokenByRefresh(ctx context.Context, refresh string) (store.Token, error) {
	h, err := s.refreshIndex(ctx, refresh)
	if err != nil {
		return store.Token{}, fmt.Errorf("redis store: token by refresh: %w", err)
	}
	t, err := s.tokenByHash(ctx, h)
	if err != nil {
		return store.Token{}, fmt.Errorf("redis store: token by refresh: %w", err)
	}
	t.RefreshToken = refresh
	return t, nil
}

// RotateRefresh implements store.Store.
func (s *Store) RotateRefresh(ctx context.Context, oldRefresh string, next store.Token) (store.Token, error) {
	next, err := store.FillToken(next)
	if err != nil {
		return store.Token{}, fmt.Errorf("redis store: rotate refresh: %w", err)
	}
	oldAccess, err := s.refreshIndex(ctx, oldRefresh)
	if err != nil {
		return store.Token{}, fmt.Errorf("redis store: rotate refresh: %w", err)
	}
	keys := append(s.tokenKeys(next), s.key("refresh", store.HashSecret(oldRefresh)), s.key("token", oldAccess))
	r, err := s.rotate.Exec(ctx, s.c, keys, append(tokenArgs(next), oldAccess)).AsInt64()
	switch {
	case err != nil:
		return store.Token{}, fmt.Errorf("redis store: rotate refresh: %w", err)
	case r < 0:
		return store.Token{}, fmt.Errorf("redis store: rotate refresh: %w", store.ErrNotFound)
	case r == 0:
		return store.Token{}, fmt.Errorf("redis store: rotate refresh: %w", store.ErrConflict)
	}
	return next, nil
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, access string) error {
	ok, err := s.revoke.Exec(ctx, s.c, []string{s.key("token", store.HashSecret(access))}, nil).AsInt64()
	if err != nil {
		return fmt.Errorf("redis store: revoke token: %w", err)
	}
	if ok == 0 {
		return fmt.Errorf("redis store: revoke token: %w", store.ErrNotFound)
	}
	return nil
}

// --- authorization codes ---

const createCodeLua = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'portal_id', ARGV[1], 'app_id', ARGV[2], 'user_id', ARGV[3], 'scopes', ARGV[4],
  'expires', ARGV[5], 'used', ARGV[6])
if ARGV[7] ~= '0' then redis.call('PEXPIREAT', KEYS[1], ARGV[7]) end
return 1
`

// useCodeLua only flips used; the expiry was checked in Go, and it never
// changes after creation.
const useCodeLua = `
if redis.call('HGET', KEYS[1], 'used') ~= '0' then return 0 end
redis.call('HSET', KEYS[1], 'used', '1')
return 1
`

// CreateAuthCode implements store.Store.
func (s *Store) CreateAuthCode(ctx context.Context, c store.AuthCode) (store.AuthCode, error) {
	if c.Code == "" {
		var err error
		if c.Code, err = store.NewToken(); err != nil {
			return store.AuthCode{}, fmt.Errorf("redis store: create auth code: %w", err)
		}
	}
	c.Scopes = store.CloneScopes(c.Scopes)
	ok, err := s.createCode.Exec(ctx, s.c, []string{s.key("code", store.HashSecret(c.Code))},
		[]string{itoa(c.PortalID), itoa(c.AppID), itoa(c.UserID), store.JoinScopes(c.Scopes),
			itoa(store.EncodeTime(c.Expires)), boolStr(c.Used), itoa(expireAtMS(c.Expires))}).AsInt64()
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("redis store: create auth code: %w", err)
	}
	if ok == 0 {
		return store.AuthCode{}, fmt.Errorf("redis store: create auth code: %w", store.ErrConflict)
	}
	return c, nil
}

// UseAuthCode implements store.Store.
func (s *Store) UseAuthCode(ctx context.Context, code string, appID int64, now time.Time) (store.AuthCode, error) {
	k := s.key("code", store.HashSecret(code))
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(k).Build()).AsStrMap()
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("redis store: use auth code: %w", err)
	}
	if len(m) == 0 {
		return store.AuthCode{}, fmt.Errorf("redis store: use auth code: %w", store.ErrNotFound)
	}
	f := fields{m: m}
	c := store.AuthCode{
		Code: code, PortalID: f.int("portal_id"), AppID: f.int("app_id"), UserID: f.int("user_id"),
		Scopes: store.SplitScopes(f.str("scopes")), Expires: f.time("expires"), Used: true,
	}
	if f.err != nil {
		return store.AuthCode{}, fmt.Errorf("redis store: use auth code: %w", f.err)
	}
	// The app is checked before the code is consumed, and like the expiry it
	// never changes after creation, so the script need not check it again.
	if f.bool("used") || !now.Before(c.Expires) || c.AppID != appID {
		return store.AuthCode{}, fmt.Errorf("redis store: use auth code: %w", store.ErrNotFound)
	}
	ok, err := s.useCode.Exec(ctx, s.c, []string{k}, nil).AsInt64()
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("redis store: use auth code: %w", err)
	}
	if ok == 0 { // another caller consumed it since the read
		return store.AuthCode{}, fmt.Errorf("redis store: use auth code: %w", store.ErrNotFound)
	}
	return c, nil
}

// --- webhooks ---

const createWebhookLua = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'id', id, 'portal_id', ARGV[1], 'app_id', ARGV[2], 'scopes', ARGV[3],
  'created_at', ARGV[4], 'revoked', '0')
return id
`

// CreateWebhook implements store.Store.
func (s *Store) CreateWebhook(ctx context.Context, portalID, userID, appID int64, scopes []string) (store.Webhook, error) {
	w := store.Webhook{PortalID: portalID, UserID: userID, AppID: appID, Scopes: store.CloneScopes(scopes), CreatedAt: roundTrip(time.Now())}
	var err error
	if w.Secret, err = store.NewWebhookSecret(); err != nil {
		return store.Webhook{}, fmt.Errorf("redis store: create webhook: %w", err)
	}
	id, err := s.createWebhook.Exec(ctx, s.c,
		[]string{s.key("webhook", itoa(userID), store.HashSecret(w.Secret)), s.key("seq", "webhook")},
		[]string{itoa(portalID), itoa(appID), store.JoinScopes(w.Scopes), itoa(store.EncodeTime(w.CreatedAt))}).AsInt64()
	if err != nil {
		return store.Webhook{}, fmt.Errorf("redis store: create webhook: %w", err)
	}
	if id == 0 {
		return store.Webhook{}, fmt.Errorf("redis store: create webhook: %w", store.ErrConflict)
	}
	w.ID = id
	return w, nil
}

// Webhook implements store.Store.
func (s *Store) Webhook(ctx context.Context, userID int64, secret string) (store.Webhook, error) {
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.key("webhook", itoa(userID), store.HashSecret(secret))).Build()).AsStrMap()
	if err != nil {
		return store.Webhook{}, fmt.Errorf("redis store: webhook of user %d: %w", userID, err)
	}
	if len(m) == 0 {
		return store.Webhook{}, fmt.Errorf("redis store: webhook of user %d: %w", userID, store.ErrNotFound)
	}
	f := fields{m: m}
	w := store.Webhook{
		ID: f.int("id"), PortalID: f.int("portal_id"), UserID: userID, AppID: f.int("app_id"), Secret: secret,
		Scopes: store.SplitScopes(f.str("scopes")), CreatedAt: f.time("created_at"), Revoked: f.bool("revoked"),
	}
	if f.err != nil {
		return store.Webhook{}, fmt.Errorf("redis store: webhook of user %d: %w", userID, f.err)
	}
	return w, nil
}

// --- channels ---

// channelCASLua replaces the channel only if its private id is still the one
// the caller saw expire (ARGV[1], "" = there was none): of racing nodes,
// exactly one replaces it and the others read the winner's.
const channelCASLua = `
local cur = redis.call('HGET', KEYS[1], 'private_id') or ''
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'private_id', ARGV[2], 'public_id', ARGV[3], 'start', ARGV[4], 'end', ARGV[5])
return 1
`

func (s *Store) channelKey(k store.ChannelKey) string {
	return s.key("chan", itoa(k.PortalID), itoa(k.AppID), itoa(k.UserID), k.Type)
}

func (s *Store) readChannel(ctx context.Context, key store.ChannelKey) (store.Channel, bool, error) {
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.channelKey(key)).Build()).AsStrMap()
	if err != nil {
		return store.Channel{}, false, err
	}
	return parseChannel(key, m)
}

func parseChannel(key store.ChannelKey, m map[string]string) (store.Channel, bool, error) {
	if len(m) == 0 {
		return store.Channel{}, false, nil
	}
	f := fields{m: m}
	c := store.Channel{
		PortalID: key.PortalID, AppID: key.AppID, UserID: key.UserID, Type: key.Type,
		PrivateID: f.str("private_id"), PublicID: f.str("public_id"), Start: f.time("start"), End: f.time("end"),
	}
	return c, true, f.err
}

// ChannelFor implements store.Store.
func (s *Store) ChannelFor(ctx context.Context, key store.ChannelKey, now time.Time, ttl time.Duration) (store.Channel, *store.Channel, error) {
	old, found, err := s.readChannel(ctx, key)
	if err != nil {
		return store.Channel{}, nil, fmt.Errorf("redis store: channel: %w", err)
	}
	cur, replaced, err := s.settleChannel(ctx, key, old, found, now, ttl)
	if err != nil {
		return store.Channel{}, nil, fmt.Errorf("redis store: channel: %w", err)
	}
	return cur, replaced, nil
}

// settleChannel returns the channel valid at now given the state last read
// (old, found), replacing it by compare-and-set if it is missing or expired.
// On a lost race it reads the winner's channel and starts over.
func (s *Store) settleChannel(ctx context.Context, key store.ChannelKey, old store.Channel, found bool, now time.Time, ttl time.Duration) (store.Channel, *store.Channel, error) {
	for range maxCASRounds {
		if found && !old.Expired(now) {
			return old, nil, nil
		}
		cur := store.Channel{PortalID: key.PortalID, AppID: key.AppID, UserID: key.UserID, Type: key.Type, Start: now, End: now.Add(ttl)}
		var err error
		if cur.PrivateID, err = store.NewChannelID(); err != nil {
			return store.Channel{}, nil, err
		}
		if key.UserID != 0 { // shared channels have no public id
			if cur.PublicID, err = store.NewChannelID(); err != nil {
				return store.Channel{}, nil, err
			}
		}
		expect := ""
		if found {
			expect = old.PrivateID
		}
		ok, err := s.channelCAS.Exec(ctx, s.c, []string{s.channelKey(key)},
			[]string{expect, cur.PrivateID, cur.PublicID, itoa(store.EncodeTime(cur.Start)), itoa(store.EncodeTime(cur.End))}).AsInt64()
		if err != nil {
			return store.Channel{}, nil, err
		}
		if ok == 1 {
			cur.Start, cur.End = roundTrip(cur.Start), roundTrip(cur.End)
			if !found {
				return cur, nil, nil
			}
			return cur, &old, nil
		}
		if old, found, err = s.readChannel(ctx, key); err != nil {
			return store.Channel{}, nil, err
		}
	}
	return store.Channel{}, nil, fmt.Errorf("channel %s replaced concurrently %d times in a row", s.channelKey(key), maxCASRounds)
}

// PublicChannels implements store.Store. All channels are read in one round
// trip; only missing or expired ones take the compare-and-set path.
func (s *Store) PublicChannels(ctx context.Context, portalID, appID int64, userIDs []int64, now time.Time, ttl time.Duration) (map[int64]store.Channel, []store.Channel, error) {
	typ := store.TypePrivate
	if appID != 0 {
		ids, err := s.c.Do(ctx, s.c.B().Zrangebyscore().Key(s.key("apps", itoa(portalID))).Min(itoa(appID)).Max(itoa(appID)).Build()).AsStrSlice()
		if err != nil {
			return nil, nil, fmt.Errorf("redis store: public channels: app %d: %w", appID, err)
		}
		if len(ids) == 0 {
			return nil, nil, fmt.Errorf("redis store: public channels: app %d: %w", appID, store.ErrNotFound)
		}
		typ = ids[0]
	}
	channels := make(map[int64]store.Channel, len(userIDs))
	var keys []store.ChannelKey
	seen := make(map[int64]bool, len(userIDs))
	for _, id := range userIDs {
		if id == 0 || seen[id] {
			continue
		}
		seen[id] = true
		keys = append(keys, store.ChannelKey{PortalID: portalID, AppID: appID, UserID: id, Type: typ})
	}
	if len(keys) == 0 {
		return channels, nil, nil
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = s.c.B().Hgetall().Key(s.channelKey(k)).Build()
	}
	var replaced []store.Channel
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		k := keys[i]
		m, err := r.AsStrMap()
		if err != nil {
			return nil, nil, fmt.Errorf("redis store: public channels: user %d: %w", k.UserID, err)
		}
		old, found, err := parseChannel(k, m)
		if err != nil {
			return nil, nil, fmt.Errorf("redis store: public channels: user %d: %w", k.UserID, err)
		}
		cur, prev, err := s.settleChannel(ctx, k, old, found, now, ttl)
		if err != nil {
			return nil, nil, fmt.Errorf("redis store: public channels: user %d: %w", k.UserID, err)
		}
		channels[k.UserID] = cur
		if prev != nil {
			replaced = append(replaced, *prev)
		}
	}
	return channels, replaced, nil
}

// --- push queue ---

// The due zset orders jobs by "<next attempt>:<id>", both as fixed-width
// decimals (see lexTime), all at score 0: a lexicographic range then picks
// the oldest due job exactly, which a score (a double) could not do with
// nanosecond times. push:member maps a job id to its current zset member.

const enqueueLua = `
local id = redis.call('INCR', KEYS[1])
local m = ARGV[2] .. ':' .. string.format('%020d', id)
redis.call('ZADD', KEYS[2], 0, m)
redis.call('HSET', KEYS[3], id, m)
redis.call('HSET', KEYS[4], id, ARGV[1])
redis.call('HSET', KEYS[5], id, 0)
redis.call('HSET', KEYS[6], id, ARGV[3])
return id
`

const claimLua = `
local r = redis.call('ZRANGEBYLEX', KEYS[1], '-', ARGV[1], 'LIMIT', 0, 1)
if #r == 0 then return false end
local padded = string.sub(r[1], 22)
local id = string.match(padded, '^0*(%d+)$')
local m = ARGV[2] .. ':' .. padded
redis.call('ZREM', KEYS[1], r[1])
redis.call('ZADD', KEYS[1], 0, m)
redis.call('HSET', KEYS[2], id, m)
return {id, redis.call('HGET', KEYS[3], id), redis.call('HGET', KEYS[4], id), redis.call('HGET', KEYS[5], id)}
`

const completeLua = `
local m = redis.call('HGET', KEYS[2], ARGV[1])
if not m then return 0 end
redis.call('ZREM', KEYS[1], m)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
`

const retryLua = `
local m = redis.call('HGET', KEYS[2], ARGV[1])
if not m then return 0 end
local n = ARGV[2] .. ':' .. string.sub(m, 22)
redis.call('ZREM', KEYS[1], m)
redis.call('ZADD', KEYS[1], 0, n)
redis.call('HSET', KEYS[2], ARGV[1], n)
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
return 1
`

func (s *Store) pushKeys(names ...string) []string {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = s.key("push", n)
	}
	return keys
}

// EnqueuePush implements store.Store.
func (s *Store) EnqueuePush(ctx context.Context, payload []byte, now time.Time) (store.PushJob, error) {
	id, err := s.enqueue.Exec(ctx, s.c, s.pushKeys("seq", "due", "member", "payload", "attempts", "created"),
		[]string{string(payload), lexTime(now), itoa(store.EncodeTime(now))}).AsInt64()
	if err != nil {
		return store.PushJob{}, fmt.Errorf("redis store: enqueue push: %w", err)
	}
	now = roundTrip(now)
	return store.PushJob{ID: id, Payload: append([]byte(nil), payload...), NextAttempt: now, CreatedAt: now}, nil
}

// ClaimPush implements store.Store.
func (s *Store) ClaimPush(ctx context.Context, now time.Time, lease time.Duration) (store.PushJob, error) {
	next := now.Add(lease)
	// Members due at now sort below "<lexTime(now)>;" (';' follows ':').
	vals, err := s.claim.Exec(ctx, s.c, s.pushKeys("due", "member", "payload", "attempts", "created"),
		[]string{"(" + lexTime(now) + ";", lexTime(next)}).ToArray()
	if rueidis.IsRedisNil(err) {
		return store.PushJob{}, fmt.Errorf("redis store: claim push: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.PushJob{}, fmt.Errorf("redis store: claim push: %w", err)
	}
	if len(vals) != 4 {
		return store.PushJob{}, fmt.Errorf("redis store: claim push: script returned %d values", len(vals))
	}
	var str [4]string
	for i, v := range vals {
		if str[i], err = v.ToString(); err != nil {
			return store.PushJob{}, fmt.Errorf("redis store: claim push: corrupt job: %w", err)
		}
	}
	j := store.PushJob{Payload: []byte(str[1]), NextAttempt: roundTrip(next)}
	var created, attempts int64
	if j.ID, err = strconv.ParseInt(str[0], 10, 64); err == nil {
		if attempts, err = strconv.ParseInt(str[2], 10, 64); err == nil {
			created, err = strconv.ParseInt(str[3], 10, 64)
		}
	}
	if err != nil {
		return store.PushJob{}, fmt.Errorf("redis store: claim push: corrupt job: %w", err)
	}
	j.Attempts, j.CreatedAt = int(attempts), store.DecodeTime(created)
	return j, nil
}

// CompletePush implements store.Store.
func (s *Store) CompletePush(ctx context.Context, id int64) error {
	ok, err := s.complete.Exec(ctx, s.c, s.pushKeys("due", "member", "payload", "attempts", "created"), []string{itoa(id)}).AsInt64()
	return pushResult("complete push", ok, err)
}

// RetryPush implements store.Store.
func (s *Store) RetryPush(ctx context.Context, id int64, next time.Time) error {
	ok, err := s.retry.Exec(ctx, s.c, s.pushKeys("due", "member", "attempts"), []string{itoa(id), lexTime(next)}).AsInt64()
	return pushResult("retry push", ok, err)
}

func pushResult(op string, ok int64, err error) error {
	if err != nil {
		return fmt.Errorf("redis store: %s: %w", op, err)
	}
	if ok == 0 {
		return fmt.Errorf("redis store: %s: %w", op, store.ErrNotFound)
	}
	return nil
}

// lexTime encodes t as 20 decimal digits that sort like the times: the
// Unix nanoseconds with the sign bit flipped, so that times before 1970
// sort first too.
func lexTime(t time.Time) string {
	return fmt.Sprintf("%020d", uint64(store.EncodeTime(t))^(1<<63))
}

// --- encoding ---

// roundTrip returns t as a later read will: returned records then compare
// equal with stored ones field by field (no monotonic reading, UTC).
func roundTrip(t time.Time) time.Time { return store.DecodeTime(store.EncodeTime(t)) }

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// fields reads a record hash, keeping the first malformed or missing field
// as err so that callers check once.
type fields struct {
	m   map[string]string
	err error
}

func (f *fields) str(name string) string {
	v, ok := f.m[name]
	if !ok && f.err == nil {
		f.err = fmt.Errorf("corrupt record: field %s missing", name)
	}
	return v
}

func (f *fields) int(name string) int64 {
	v := f.str(name)
	if f.err != nil {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		f.err = fmt.Errorf("corrupt record: field %s: %w", name, err)
	}
	return n
}

func (f *fields) time(name string) time.Time { return store.DecodeTime(f.int(name)) }

func (f *fields) bool(name string) bool { return f.int(name) != 0 }
