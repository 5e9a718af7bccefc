package store_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/store/storetest"
)

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := store.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "registry.db"), "push.example.com")
		if err != nil {
			t.Fatalf("OpenSQLite: %v", err)
		}
		return s
	})
}

func TestSQLiteReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "registry.db")
	s, err := store.OpenSQLite(ctx, path, "push.example.com")
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	p, err := s.DefaultPortal(ctx)
	if err != nil {
		t.Fatalf("DefaultPortal: %v", err)
	}
	a, err := s.CreateApp(ctx, p.ID, "app", []string{"pull"})
	if err != nil {
		t.Fatalf("CreateApp: %v", err)
	}
	if err := s.PutUser(ctx, store.User{PortalID: p.ID, ID: 1, Active: true, Admin: true}); err != nil {
		t.Fatalf("PutUser: %v", err)
	}
	now := time.Now()
	tok, err := s.CreateToken(ctx, store.Token{PortalID: p.ID, AppID: a.ID, UserID: 1, Scopes: []string{"pull"}, AccessExpires: now.Add(time.Hour), RefreshExpires: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	w, err := s.CreateWebhook(ctx, p.ID, 1, 0, []string{"pull"})
	if err != nil {
		t.Fatalf("CreateWebhook: %v", err)
	}
	ch, _, err := s.ChannelFor(ctx, store.ChannelKey{PortalID: p.ID, AppID: a.ID, UserID: 1, Type: a.ClientID}, now, time.Hour)
	if err != nil {
		t.Fatalf("ChannelFor: %v", err)
	}
	// SQLite gives the WAL the database file's mode; check it stays private.
	if fi, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no WAL file (journal_mode not WAL?): %v", err)
	} else if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("WAL file mode = %v, want 0600", mode)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("database file mode = %v, want 0600", mode)
	}

	// Reopen with a new domain: same portal (member_id), domain updated.
	s, err = store.OpenSQLite(ctx, path, "push2.example.com")
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	p2, err := s.DefaultPortal(ctx)
	if err != nil {
		t.Fatalf("DefaultPortal: %v", err)
	}
	if p2.ID != p.ID || p2.MemberID != p.MemberID || p2.Domain != "push2.example.com" || !p2.CreatedAt.Equal(p.CreatedAt) {
		t.Errorf("portal after reopen = %+v, was %+v", p2, p)
	}
	if a2, err := s.App(ctx, a.ClientID); err != nil || !a2.SecretMatches(a.ClientSecret) {
		t.Errorf("App after reopen = %+v, %v", a2, err)
	}
	if u, err := s.User(ctx, p.ID, 1); err != nil || !u.Admin {
		t.Errorf("User after reopen = %+v, %v", u, err)
	}
	if got, err := s.TokenByAccess(ctx, tok.AccessToken); err != nil || got.UserID != 1 || !got.AccessExpires.Equal(tok.AccessExpires) {
		t.Errorf("token after reopen = %+v, %v", got, err)
	}
	if got, err := s.Webhook(ctx, 1, w.Secret); err != nil || got.ID != w.ID {
		t.Errorf("webhook after reopen = %+v, %v", got, err)
	}
	if got, r, err := s.ChannelFor(ctx, ch.Key(), now.Add(time.Minute), time.Hour); err != nil || r != nil || got.PrivateID != ch.PrivateID || !got.End.Equal(ch.End) {
		t.Errorf("channel after reopen = %+v, %v, %v; want %+v", got, r, err, ch)
	}
}

// A schema newer than the binary must be refused, not silently used.
func TestSQLiteNewerSchema(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "registry.db")
	s, err := store.OpenSQLite(ctx, path, "d")
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if err := store.SetUserVersionForTest(ctx, s, 999); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := store.OpenSQLite(ctx, path, "d"); err == nil {
		s.Close()
		t.Fatal("OpenSQLite on a newer schema succeeded")
	}
}
