package sqlite_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/store/sqlite"
	"github.com/pushpull/pushpull/internal/store/storetest"
)

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "registry.db"), "push.example.com")
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestSQLiteReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "registry.db")
	s, err := sqlite.Open(ctx, path, "push.example.com")
	if err != nil {
		t.Fatalf("Open: %v", err)
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
	s, err = sqlite.Open(ctx, path, "push2.example.com")
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
	s, err := sqlite.Open(ctx, path, "d")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := sqlite.SetUserVersionForTest(ctx, s, 999); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := sqlite.Open(ctx, path, "d"); err == nil {
		s.Close()
		t.Fatal("Open on a newer schema succeeded")
	}
}

// With writes failing (a full disk), everything a REST call only reads
// keeps working: the portal, apps, users, tokens, webhooks and channels
// that exist and have not expired. Only what must write fails.
func TestSQLiteReadsWhenWritesFail(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "registry.db")
	rw, err := sqlite.Open(ctx, path, "push.example.com")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	now := time.Now()
	p, err := rw.DefaultPortal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := rw.CreateApp(ctx, p.ID, "app", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.PutUser(ctx, store.User{PortalID: p.ID, ID: 1, Active: true}); err != nil {
		t.Fatal(err)
	}
	tok, err := rw.CreateToken(ctx, store.Token{PortalID: p.ID, AppID: a.ID, UserID: 1, AccessExpires: now.Add(time.Hour), RefreshExpires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := rw.CreateWebhook(ctx, p.ID, 1, 0, []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	appKey := store.ChannelKey{PortalID: p.ID, AppID: a.ID, UserID: 1, Type: a.ClientID}
	ch, _, err := rw.ChannelFor(ctx, appKey, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	own, _, err := rw.PublicChannels(ctx, p.ID, 0, []int64{1}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	ro, err := sqlite.OpenQueryOnlyForTest(ctx, path, "push.example.com")
	if err != nil {
		t.Fatalf("open with writes refused: %v", err)
	}
	defer ro.Close()
	if got, err := ro.DefaultPortal(ctx); err != nil || got.ID != p.ID {
		t.Errorf("DefaultPortal = %+v, %v", got, err)
	}
	if got, err := ro.App(ctx, a.ClientID); err != nil || got.ID != a.ID {
		t.Errorf("App = %+v, %v", got, err)
	}
	if got, err := ro.Apps(ctx, p.ID); err != nil || len(got) != 1 {
		t.Errorf("Apps = %+v, %v", got, err)
	}
	if got, err := ro.User(ctx, p.ID, 1); err != nil || !got.Active {
		t.Errorf("User = %+v, %v", got, err)
	}
	if got, err := ro.TokenByAccess(ctx, tok.AccessToken); err != nil || got.UserID != 1 {
		t.Errorf("TokenByAccess = %+v, %v", got, err)
	}
	if got, err := ro.Webhook(ctx, 1, w.Secret); err != nil || got.ID != w.ID {
		t.Errorf("Webhook = %+v, %v", got, err)
	}
	if got, r, err := ro.ChannelFor(ctx, appKey, now.Add(time.Minute), time.Hour); err != nil || r != nil || got.PrivateID != ch.PrivateID {
		t.Errorf("ChannelFor(valid) = %+v, %v, %v", got, r, err)
	}
	if got, r, err := ro.PublicChannels(ctx, p.ID, 0, []int64{1, 1}, now.Add(time.Minute), time.Hour); err != nil || len(r) != 0 || got[1].PublicID != own[1].PublicID {
		t.Errorf("PublicChannels(valid) = %+v, %v, %v", got, r, err)
	}
	if got, r, err := ro.PublicChannels(ctx, p.ID, a.ID, []int64{1}, now.Add(time.Minute), time.Hour); err != nil || len(r) != 0 || got[1].PrivateID != ch.PrivateID {
		t.Errorf("PublicChannels(app, valid) = %+v, %v, %v", got, r, err)
	}
	// The test really refuses writes.
	if _, err := ro.CreateApp(ctx, p.ID, "new", nil); err == nil {
		t.Error("CreateApp succeeded on a registry that refuses writes")
	}
	if _, _, err := ro.ChannelFor(ctx, appKey, now.Add(2*time.Hour), time.Hour); err == nil {
		t.Error("replacing an expired channel succeeded on a registry that refuses writes")
	}
}
