package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/store"
)

// testLister checks the inventory of an engine that offers one
// (store.Lister): what it lists, that no secret comes back, and that a
// revoke by id is what TokenByAccess then sees.
func testLister(t *testing.T, s store.Store) {
	l, ok := s.(store.Lister)
	if !ok {
		t.Skip("this engine does not implement store.Lister")
	}
	ctx := t.Context()
	p, a := setup(t, s)
	for _, u := range []store.User{{PortalID: p.ID, ID: 7, Active: true}, {PortalID: p.ID, ID: 3, Admin: true}} {
		if err := s.PutUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	users, err := l.Users(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].ID != 3 || !users[0].Admin || users[0].Active || users[1].ID != 7 || !users[1].Active {
		t.Fatalf("Users: %+v, want 3 (admin) then 7 (active)", users)
	}

	var toks []store.Token
	for i := range 3 {
		tok, err := s.CreateToken(ctx, store.Token{PortalID: p.ID, AppID: a.ID, UserID: 7, Scopes: suiteScopes,
			AccessExpires: epoch.Add(time.Hour), RefreshExpires: epoch.Add(48 * time.Hour), CreatedAt: epoch.Add(time.Duration(i) * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	list, total, err := l.Tokens(ctx, p.ID, 2)
	if err != nil {
		t.Fatal(err)
	}
	if total != 3 || len(list) != 2 || list[0].ID != store.HashSecret(toks[2].AccessToken) || list[1].ID != store.HashSecret(toks[1].AccessToken) {
		t.Fatalf("Tokens(limit 2): %d in all, %+v; want the two newest first", total, list)
	}
	if got := list[0]; got.AppID != a.ID || got.UserID != 7 || got.Revoked || !got.CreatedAt.Equal(epoch.Add(2*time.Minute)) ||
		!got.AccessExpires.Equal(epoch.Add(time.Hour)) || len(got.Scopes) != 2 {
		t.Fatalf("token row %+v", got)
	}
	if err := l.RevokeTokenByID(ctx, list[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := l.RevokeTokenByID(ctx, list[0].ID); err != nil {
		t.Fatalf("revoking twice: %v", err)
	}
	if got, err := s.TokenByAccess(ctx, toks[2].AccessToken); err != nil || !got.Revoked {
		t.Fatalf("after RevokeTokenByID: %+v %v", got, err)
	}
	if got, err := s.TokenByAccess(ctx, toks[1].AccessToken); err != nil || got.Revoked {
		t.Fatalf("another token: %+v %v", got, err)
	}
	if err := l.RevokeTokenByID(ctx, store.HashSecret("unknown")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}

	wh, err := s.CreateWebhook(ctx, p.ID, 7, a.ID, suiteScopes)
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := l.Webhooks(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(hooks) != 1 || hooks[0].ID != wh.ID || hooks[0].UserID != 7 || hooks[0].AppID != a.ID || hooks[0].Secret != "" || hooks[0].Revoked {
		t.Fatalf("Webhooks: %+v", hooks)
	}
}
