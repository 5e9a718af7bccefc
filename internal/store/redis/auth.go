package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/store"
)

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
