package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/pushpull/pushpull/internal/store"
)

var _ store.Lister = (*Store)(nil)

// Users implements store.Lister.
func (s *Store) Users(ctx context.Context, portalID int64) ([]store.User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, active, admin, created_at FROM users WHERE portal_id = ? ORDER BY id`, portalID)
	if err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	defer rows.Close()
	var out []store.User
	for rows.Next() {
		u := store.User{PortalID: portalID}
		var created int64
		if err := rows.Scan(&u.ID, &u.Active, &u.Admin, &created); err != nil {
			return nil, fmt.Errorf("store: list users: %w", err)
		}
		u.CreatedAt = store.DecodeTime(created)
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	return out, nil
}

// Tokens implements store.Lister.
func (s *Store) Tokens(ctx context.Context, portalID int64, limit int) ([]store.TokenInfo, int, error) {
	var total int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE portal_id = ?`, portalID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("store: count tokens: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT access_hash, app_id, user_id, scopes, access_expires, refresh_expires, revoked, created_at
FROM tokens WHERE portal_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?`, portalID, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("store: list tokens: %w", err)
	}
	defer rows.Close()
	var out []store.TokenInfo
	for rows.Next() {
		t := store.TokenInfo{PortalID: portalID}
		var scopes string
		var access, refresh, created int64
		if err := rows.Scan(&t.ID, &t.AppID, &t.UserID, &scopes, &access, &refresh, &t.Revoked, &created); err != nil {
			return nil, 0, fmt.Errorf("store: list tokens: %w", err)
		}
		t.Scopes = store.SplitScopes(scopes)
		t.AccessExpires, t.RefreshExpires, t.CreatedAt = store.DecodeTime(access), store.DecodeTime(refresh), store.DecodeTime(created)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: list tokens: %w", err)
	}
	return out, total, nil
}

// RevokeTokenByID implements store.Lister.
func (s *Store) RevokeTokenByID(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked = 1 WHERE access_hash = ?`, id)
	if err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: revoke token: %w", err)
	} else if n == 0 {
		return fmt.Errorf("store: revoke token: %w", store.ErrNotFound)
	}
	return nil
}

// Webhooks implements store.Lister.
func (s *Store) Webhooks(ctx context.Context, portalID int64) ([]store.Webhook, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, user_id, app_id, scopes, created_at, revoked FROM webhooks WHERE portal_id = ? ORDER BY id`, portalID)
	if err != nil {
		return nil, fmt.Errorf("store: list webhooks: %w", err)
	}
	defer rows.Close()
	var out []store.Webhook
	for rows.Next() {
		w := store.Webhook{PortalID: portalID}
		var app sql.NullInt64
		var scopes string
		var created int64
		if err := rows.Scan(&w.ID, &w.UserID, &app, &scopes, &created, &w.Revoked); err != nil {
			return nil, fmt.Errorf("store: list webhooks: %w", err)
		}
		w.AppID = app.Int64
		w.Scopes = store.SplitScopes(scopes)
		w.CreatedAt = store.DecodeTime(created)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list webhooks: %w", err)
	}
	return out, nil
}
