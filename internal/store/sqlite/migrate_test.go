package sqlite

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/pushpull/pushpull/internal/store"
)

// A registry written before version 3 kept client secrets in plain text;
// opening it with this build keeps the apps working and leaves only the
// hash on disk.
func TestMigrationHashesClientSecrets(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "registry.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	const plain = "Ab3dEfGh1jKlMn0pQrStUvWxYz0123456789abcdefghijklmn"
	for _, q := range []string{migrations[0], migrations[1], fmt.Sprintf("PRAGMA user_version = %d", 2),
		`INSERT INTO portals (member_id, domain, created_at) VALUES ('0123456789abcdef0123456789abcdef', 'push.example', 0)`,
		`INSERT INTO apps (portal_id, client_id, client_secret, name, scopes, created_at) VALUES (1, 'local.00000000000001.00000001', '` + plain + `', 'old', 'pull', 0)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path, "push.example")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := s.App(ctx, "local.00000000000001.00000001")
	if err != nil || !a.SecretMatches(plain) || a.SecretMatches("wrong") {
		t.Fatalf("migrated app = %+v, %v", a, err)
	}
	var stored string
	if err := s.db.QueryRowContext(ctx, `SELECT client_secret_hash FROM apps`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != store.HashSecret(plain) {
		t.Fatalf("stored secret %q, want its hash", stored)
	}
}
