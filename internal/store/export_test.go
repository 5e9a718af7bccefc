package store

import (
	"context"
	"fmt"
)

// SetUserVersionForTest lets the external tests fake a newer schema.
func SetUserVersionForTest(ctx context.Context, s *SQLite, v int) error {
	_, err := s.db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v))
	return err
}
