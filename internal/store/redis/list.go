package redis

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/store"
)

var _ store.Lister = (*Store)(nil)

// The inventory (store.Lister) reads with SCAN: the layout has no index of
// users, tokens or webhooks, and adding one would put a write on every
// token issue for a page an operator opens now and then. SCAN walks the
// whole keyspace (the broker's history included), scanCount keys a round
// trip, so a listing costs about keys/scanCount round trips; it runs only
// when the console's Registry page is opened.
const scanCount = 10_000

// globEscaper escapes what SCAN's MATCH would read as a pattern.
var globEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)

// scanKeys returns the keys under s.key(parts...)+":" on every node the
// client knows (one, or a cluster's masters and replicas), once each.
func (s *Store) scanKeys(ctx context.Context, parts ...string) ([]string, error) {
	match := globEscaper.Replace(s.key(parts...)+":") + "*"
	seen := map[string]bool{}
	var keys []string
	for _, node := range s.c.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(match).Count(scanCount).Build()).AsScanEntry()
			if err != nil {
				return nil, err
			}
			for _, k := range e.Elements {
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return keys, nil
}

// hashes reads every key's hash; a key gone meanwhile (an expired token)
// reads as an empty map.
func (s *Store) hashes(ctx context.Context, keys []string) ([]map[string]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = s.c.B().Hgetall().Key(k).Build()
	}
	out := make([]map[string]string, len(keys))
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		m, err := r.AsStrMap()
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

// Users implements store.Lister.
func (s *Store) Users(ctx context.Context, portalID int64) ([]store.User, error) {
	keys, err := s.scanKeys(ctx, "user", itoa(portalID))
	if err != nil {
		return nil, fmt.Errorf("redis store: list users: %w", err)
	}
	ms, err := s.hashes(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("redis store: list users: %w", err)
	}
	var out []store.User
	for i, m := range ms {
		if len(m) == 0 {
			continue
		}
		id, err := strconv.ParseInt(keys[i][strings.LastIndexByte(keys[i], ':')+1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redis store: list users: key %s: %w", keys[i], err)
		}
		f := fields{m: m}
		u := store.User{PortalID: portalID, ID: id, Active: f.bool("active"), Admin: f.bool("admin"), CreatedAt: f.time("created_at")}
		if f.err != nil {
			return nil, fmt.Errorf("redis store: list users: user %d: %w", id, f.err)
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b store.User) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Tokens implements store.Lister.
func (s *Store) Tokens(ctx context.Context, portalID int64, limit int) ([]store.TokenInfo, int, error) {
	keys, err := s.scanKeys(ctx, "token")
	if err != nil {
		return nil, 0, fmt.Errorf("redis store: list tokens: %w", err)
	}
	ms, err := s.hashes(ctx, keys)
	if err != nil {
		return nil, 0, fmt.Errorf("redis store: list tokens: %w", err)
	}
	var out []store.TokenInfo
	for i, m := range ms {
		if len(m) == 0 {
			continue
		}
		f := fields{m: m}
		t := store.TokenInfo{
			ID: keys[i][strings.LastIndexByte(keys[i], ':')+1:], PortalID: f.int("portal_id"),
			AppID: f.int("app_id"), UserID: f.int("user_id"), Scopes: store.SplitScopes(f.str("scopes")),
			AccessExpires: f.time("access_expires"), RefreshExpires: f.time("refresh_expires"),
			Revoked: f.bool("revoked"), CreatedAt: f.time("created_at"),
		}
		if f.err != nil {
			return nil, 0, fmt.Errorf("redis store: list tokens: %w", f.err)
		}
		if t.PortalID == portalID {
			out = append(out, t)
		}
	}
	// Newest first; the id breaks ties so that the order is stable.
	slices.SortFunc(out, func(a, b store.TokenInfo) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	total := len(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, total, nil
}

// RevokeTokenByID implements store.Lister: the id is the key's hash.
func (s *Store) RevokeTokenByID(ctx context.Context, id string) error {
	ok, err := s.revoke.Exec(ctx, s.c, []string{s.key("token", id)}, nil).AsInt64()
	if err != nil {
		return fmt.Errorf("redis store: revoke token: %w", err)
	}
	if ok == 0 {
		return fmt.Errorf("redis store: revoke token: %w", store.ErrNotFound)
	}
	return nil
}

// Webhooks implements store.Lister.
func (s *Store) Webhooks(ctx context.Context, portalID int64) ([]store.Webhook, error) {
	keys, err := s.scanKeys(ctx, "webhook")
	if err != nil {
		return nil, fmt.Errorf("redis store: list webhooks: %w", err)
	}
	ms, err := s.hashes(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("redis store: list webhooks: %w", err)
	}
	var out []store.Webhook
	for i, m := range ms {
		if len(m) == 0 {
			continue
		}
		// webhook:<user_id>:<secret hash>
		rest := strings.TrimPrefix(keys[i], s.key("webhook")+":")
		user, _, _ := strings.Cut(rest, ":")
		uid, err := strconv.ParseInt(user, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redis store: list webhooks: key %s: %w", keys[i], err)
		}
		f := fields{m: m}
		w := store.Webhook{ID: f.int("id"), PortalID: f.int("portal_id"), UserID: uid, AppID: f.int("app_id"),
			Scopes: store.SplitScopes(f.str("scopes")), CreatedAt: f.time("created_at"), Revoked: f.bool("revoked")}
		if f.err != nil {
			return nil, fmt.Errorf("redis store: list webhooks: %w", f.err)
		}
		if w.PortalID == portalID {
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b store.Webhook) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}
