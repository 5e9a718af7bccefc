package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
)

// SetUserVersionForTest lets the external tests fake a newer schema.
func SetUserVersionForTest(ctx context.Context, s *Store, v int) error {
	_, err := s.db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
	return err
}

// OpenQueryOnlyForTest opens the registry at path with every write refused
// (PRAGMA query_only), as on a full disk or a read-only file system, and
// runs Open's start-up steps on it.
func OpenQueryOnlyForTest(ctx context.Context, path, domain string) (*Store, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Opaque: path, RawQuery: q.Encode()}).String())
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, domain: domain}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}
