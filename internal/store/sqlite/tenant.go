package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pushpull/pushpull/internal/store"
)

// PutTenant implements store.Tenants.
func (s *Store) PutTenant(ctx context.Context, t store.Tenant) (store.Tenant, error) {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = time.Now()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return store.Tenant{}, fmt.Errorf("store: put tenant: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `
INSERT INTO tenants (client_id, host, origin, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (client_id, host) DO UPDATE SET origin = excluded.origin`,
		t.ClientID, t.Host, t.Origin, store.EncodeTime(t.CreatedAt)); err != nil {
		return store.Tenant{}, fmt.Errorf("store: put tenant: %w", dbErr(err))
	}
	if err := bumpTenantsVersion(ctx, tx); err != nil {
		return store.Tenant{}, fmt.Errorf("store: put tenant: %w", err)
	}
	stored, err := readTenant(ctx, tx, t.ClientID, t.Host)
	if err != nil {
		return store.Tenant{}, fmt.Errorf("store: put tenant: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return store.Tenant{}, fmt.Errorf("store: put tenant: %w", err)
	}
	return stored, nil
}

func bumpTenantsVersion(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `UPDATE tenants_version SET version = version + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("tenants version: %w", err)
	}
	return nil
}

func readTenant(ctx context.Context, q querier, clientID, host string) (store.Tenant, error) {
	t := store.Tenant{ClientID: clientID, Host: host}
	var created int64
	err := q.QueryRowContext(ctx, `SELECT origin, created_at FROM tenants WHERE client_id = ? AND host = ?`, clientID, host).
		Scan(&t.Origin, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Tenant{}, fmt.Errorf("tenant %s@%s: %w", clientID, host, store.ErrNotFound)
	}
	if err != nil {
		return store.Tenant{}, fmt.Errorf("tenant %s@%s: %w", clientID, host, err)
	}
	t.CreatedAt = store.DecodeTime(created)
	return t, nil
}

// Tenant implements store.Tenants.
func (s *Store) Tenant(ctx context.Context, clientID, host string) (store.Tenant, error) {
	t, err := readTenant(ctx, s.db, clientID, host)
	if err != nil {
		return store.Tenant{}, fmt.Errorf("store: %w", err)
	}
	return t, nil
}

// ListTenants implements store.Tenants.
func (s *Store) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT client_id, host, origin, created_at FROM tenants ORDER BY client_id, host`)
	if err != nil {
		return nil, fmt.Errorf("store: list tenants: %w", err)
	}
	defer rows.Close()
	var list []store.Tenant
	for rows.Next() {
		var t store.Tenant
		var created int64
		if err := rows.Scan(&t.ClientID, &t.Host, &t.Origin, &created); err != nil {
			return nil, fmt.Errorf("store: list tenants: %w", err)
		}
		t.CreatedAt = store.DecodeTime(created)
		list = append(list, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list tenants: %w", err)
	}
	return list, nil
}

// DeleteTenant implements store.Tenants.
func (s *Store) DeleteTenant(ctx context.Context, clientID, host string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: delete tenant: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM tenants WHERE client_id = ? AND host = ?`, clientID, host)
	if err != nil {
		return fmt.Errorf("store: delete tenant: %w", dbErr(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: delete tenant: %w", err)
	} else if n == 0 {
		return fmt.Errorf("store: delete tenant %s@%s: %w", clientID, host, store.ErrNotFound)
	}
	if err := bumpTenantsVersion(ctx, tx); err != nil {
		return fmt.Errorf("store: delete tenant: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: delete tenant: %w", err)
	}
	return nil
}

// TenantsVersion implements store.Tenants.
func (s *Store) TenantsVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.QueryRowContext(ctx, `SELECT version FROM tenants_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: tenants version: %w", err)
	}
	return v, nil
}
