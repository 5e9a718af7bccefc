package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/store"
)

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
