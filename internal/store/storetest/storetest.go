// Package storetest is the conformance suite every store.Store
// implementation must pass.
package storetest

import (
	"errors"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/store"
)

// Run runs the suite. open must return a fresh, empty store for each call;
// Run closes it.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"DefaultPortal", testDefaultPortal},
		{"Apps", testApps},
		{"Users", testUsers},
		{"Tokens", testTokens},
		{"RotateRefresh", testRotateRefresh},
		{"RotateRefreshConcurrent", testRotateRefreshConcurrent},
		{"AuthCodes", testAuthCodes},
		{"Webhooks", testWebhooks},
		{"ChannelFor", testChannelFor},
		{"ChannelForConcurrent", testChannelForConcurrent},
		{"PublicChannels", testPublicChannels},
		{"PushQueue", testPushQueue},
		{"PushDue", testPushDue},
		{"PushLease", testPushLease},
		{"PushRetry", testPushRetry},
		{"PushClaimConcurrent", testPushClaimConcurrent},
		{"Tenants", testTenants},
		{"Lister", testLister},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

var (
	hex32       = regexp.MustCompile(`^[0-9a-f]{32}$`)
	clientIDRe  = regexp.MustCompile(`^local\.[0-9a-f]{14}\.[0-9]{8}$`)
	secretRe    = regexp.MustCompile(`^[A-Za-z0-9]{50}$`)
	webhookRe   = regexp.MustCompile(`^[a-z0-9]{16}$`)
	epoch       = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	channelTTL  = 43205 * time.Second
	suiteScopes = []string{"pull", "im"}
)

// setup returns the default portal and one app in it.
func setup(t *testing.T, s store.Store) (store.Portal, store.App) {
	t.Helper()
	ctx := t.Context()
	p, err := s.DefaultPortal(ctx)
	if err != nil {
		t.Fatalf("DefaultPortal: %v", err)
	}
	a, err := s.CreateApp(ctx, p.ID, "test app", suiteScopes)
	if err != nil {
		t.Fatalf("CreateApp: %v", err)
	}
	return p, a
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: err = %v, want ErrNotFound", what, err)
	}
}

func testDefaultPortal(t *testing.T, s store.Store) {
	ctx := t.Context()
	p1, err := s.DefaultPortal(ctx)
	if err != nil {
		t.Fatalf("DefaultPortal: %v", err)
	}
	if !hex32.MatchString(p1.MemberID) {
		t.Errorf("MemberID = %q, want 32 hex", p1.MemberID)
	}
	if p1.ID == 0 || p1.Domain == "" || p1.CreatedAt.IsZero() {
		t.Errorf("portal = %+v, want id, domain and created_at set", p1)
	}
	// Concurrent first calls elsewhere must not create a second portal;
	// here: repeated calls return the same one.
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			p2, err := s.DefaultPortal(ctx)
			if err != nil {
				t.Errorf("DefaultPortal again: %v", err)
				return
			}
			if p2.ID != p1.ID || p2.MemberID != p1.MemberID || p2.Domain != p1.Domain || !p2.CreatedAt.Equal(p1.CreatedAt) {
				t.Errorf("DefaultPortal again = %+v, want %+v", p2, p1)
			}
		})
	}
	wg.Wait()
}

func testApps(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, a1 := setup(t, s)
	if !clientIDRe.MatchString(a1.ClientID) {
		t.Errorf("ClientID = %q, want local.<14 hex>.<8 digits>", a1.ClientID)
	}
	if !secretRe.MatchString(a1.ClientSecret) {
		t.Errorf("ClientSecret = %q, want 50 alphanumerics", a1.ClientSecret)
	}
	if a1.ID == 0 || a1.PortalID != p.ID || a1.Name != "test app" || !slices.Equal(a1.Scopes, suiteScopes) || a1.CreatedAt.IsZero() {
		t.Errorf("CreateApp = %+v", a1)
	}
	a2, err := s.CreateApp(ctx, p.ID, "second", nil)
	if err != nil {
		t.Fatalf("CreateApp second: %v", err)
	}
	if a2.ID == a1.ID || a2.ClientID == a1.ClientID || a2.ClientSecret == a1.ClientSecret {
		t.Errorf("second app not distinct: %+v vs %+v", a2, a1)
	}
	if !a1.SecretMatches(a1.ClientSecret) || a1.SecretMatches(a2.ClientSecret) || a1.SecretMatches("") {
		t.Errorf("CreateApp: SecretMatches disagrees with the secret it returned")
	}

	got, err := s.App(ctx, a1.ClientID)
	if err != nil {
		t.Fatalf("App: %v", err)
	}
	assertApp(t, got, a1)
	// Only the hash is kept: a lookup cannot give the secret back, but it
	// recognises it.
	if got.ClientSecret != "" || got.ClientSecretHash == a1.ClientSecret || !got.SecretMatches(a1.ClientSecret) || got.SecretMatches(a2.ClientSecret) {
		t.Errorf("App: secret %q, hash %q; want no secret and a hash that matches", got.ClientSecret, got.ClientSecretHash)
	}

	list, err := s.Apps(ctx, p.ID)
	if err != nil {
		t.Fatalf("Apps: %v", err)
	}
	if len(list) != 2 {
		t.Fatalf("Apps = %d apps, want 2", len(list))
	}
	assertApp(t, list[0], a1)
	assertApp(t, list[1], a2)

	_, err = s.App(ctx, "local.00000000000000.00000000")
	wantNotFound(t, "App(unknown)", err)
	if list, err := s.Apps(ctx, p.ID+1000); err != nil || len(list) != 0 {
		t.Errorf("Apps(other portal) = %v, %v; want none", list, err)
	}
}

func assertApp(t *testing.T, got, want store.App) {
	t.Helper()
	if got.ID != want.ID || got.PortalID != want.PortalID || got.ClientID != want.ClientID ||
		got.ClientSecretHash != want.ClientSecretHash || got.Name != want.Name ||
		!slices.Equal(got.Scopes, want.Scopes) || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("app = %+v, want %+v", got, want)
	}
}

func testUsers(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, _ := setup(t, s)
	_, err := s.User(ctx, p.ID, 7)
	wantNotFound(t, "User(unknown)", err)

	if err := s.PutUser(ctx, store.User{PortalID: p.ID, ID: 7, Active: true}); err != nil {
		t.Fatalf("PutUser: %v", err)
	}
	u, err := s.User(ctx, p.ID, 7)
	if err != nil {
		t.Fatalf("User: %v", err)
	}
	if u.PortalID != p.ID || u.ID != 7 || !u.Active || u.Admin || u.CreatedAt.IsZero() {
		t.Errorf("User = %+v", u)
	}
	created := u.CreatedAt

	if err := s.PutUser(ctx, store.User{PortalID: p.ID, ID: 7, Active: true, Admin: true}); err != nil {
		t.Fatalf("PutUser update: %v", err)
	}
	u, err = s.User(ctx, p.ID, 7)
	if err != nil {
		t.Fatalf("User: %v", err)
	}
	if !u.Admin || !u.Active || !u.CreatedAt.Equal(created) {
		t.Errorf("after update User = %+v, want admin, created_at kept (%v)", u, created)
	}
	if err := s.PutUser(ctx, store.User{PortalID: p.ID, ID: 7}); err != nil {
		t.Fatalf("PutUser deactivate: %v", err)
	}
	if u, err = s.User(ctx, p.ID, 7); err != nil || u.Active || u.Admin {
		t.Errorf("after deactivate User = %+v, %v", u, err)
	}
}

func newToken(p store.Portal, a store.App, user int64) store.Token {
	return store.Token{
		PortalID: p.ID, AppID: a.ID, UserID: user, Scopes: []string{"pull"},
		AccessExpires: epoch.Add(time.Hour), RefreshExpires: epoch.Add(180 * 24 * time.Hour),
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, a := setup(t, s)
	tok, err := s.CreateToken(ctx, newToken(p, a, 1))
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if len(tok.AccessToken) < 32 || len(tok.RefreshToken) < 32 || tok.AccessToken == tok.RefreshToken || tok.CreatedAt.IsZero() {
		t.Errorf("CreateToken = %+v, want generated tokens and created_at", tok)
	}
	got, err := s.TokenByAccess(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("TokenByAccess: %v", err)
	}
	if got.AccessToken != tok.AccessToken || got.PortalID != p.ID || got.AppID != a.ID || got.UserID != 1 ||
		!slices.Equal(got.Scopes, []string{"pull"}) || !got.AccessExpires.Equal(tok.AccessExpires) ||
		!got.RefreshExpires.Equal(tok.RefreshExpires) || got.Revoked || !got.CreatedAt.Equal(tok.CreatedAt) {
		t.Errorf("TokenByAccess = %+v, want %+v", got, tok)
	}
	got, err = s.TokenByRefresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("TokenByRefresh: %v", err)
	}
	if got.RefreshToken != tok.RefreshToken || got.UserID != 1 || got.AppID != a.ID || got.Revoked {
		t.Errorf("TokenByRefresh = %+v", got)
	}

	// Caller-chosen tokens are kept; reusing one is a conflict.
	fixed := newToken(p, a, 2)
	fixed.AccessToken, fixed.RefreshToken = "access-fixed", "refresh-fixed"
	if _, err := s.CreateToken(ctx, fixed); err != nil {
		t.Fatalf("CreateToken fixed: %v", err)
	}
	if got, err := s.TokenByAccess(ctx, "access-fixed"); err != nil || got.UserID != 2 {
		t.Errorf("TokenByAccess(fixed) = %+v, %v", got, err)
	}
	if _, err := s.CreateToken(ctx, fixed); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateToken duplicate: err = %v, want ErrConflict", err)
	}

	_, err = s.TokenByAccess(ctx, "nope")
	wantNotFound(t, "TokenByAccess(unknown)", err)
	_, err = s.TokenByRefresh(ctx, "nope")
	wantNotFound(t, "TokenByRefresh(unknown)", err)
	// The two token kinds are not interchangeable.
	_, err = s.TokenByAccess(ctx, tok.RefreshToken)
	wantNotFound(t, "TokenByAccess(refresh token)", err)

	if err := s.RevokeToken(ctx, tok.AccessToken); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if got, err := s.TokenByAccess(ctx, tok.AccessToken); err != nil || !got.Revoked {
		t.Errorf("after revoke TokenByAccess = %+v, %v; want revoked", got, err)
	}
	if err := s.RevokeToken(ctx, tok.AccessToken); err != nil {
		t.Errorf("RevokeToken twice: %v", err)
	}
	wantNotFound(t, "RevokeToken(unknown)", s.RevokeToken(ctx, "nope"))
	// A revoked pair cannot be refreshed either.
	_, err = s.RotateRefresh(ctx, tok.RefreshToken, newToken(p, a, 1))
	wantNotFound(t, "RotateRefresh(revoked)", err)
}

func testRotateRefresh(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, a := setup(t, s)
	old, err := s.CreateToken(ctx, newToken(p, a, 1))
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	next, err := s.RotateRefresh(ctx, old.RefreshToken, newToken(p, a, 1))
	if err != nil {
		t.Fatalf("RotateRefresh: %v", err)
	}
	if next.AccessToken == "" || next.RefreshToken == "" || next.AccessToken == old.AccessToken || next.RefreshToken == old.RefreshToken {
		t.Errorf("RotateRefresh = %+v, want fresh tokens", next)
	}
	// Old pair is dead: both its refresh and its access token.
	if got, err := s.TokenByAccess(ctx, old.AccessToken); err != nil || !got.Revoked {
		t.Errorf("old access after rotation = %+v, %v; want revoked", got, err)
	}
	if got, err := s.TokenByRefresh(ctx, old.RefreshToken); err != nil || !got.Revoked {
		t.Errorf("old refresh after rotation = %+v, %v; want revoked", got, err)
	}
	if got, err := s.TokenByAccess(ctx, next.AccessToken); err != nil || got.Revoked || got.UserID != 1 {
		t.Errorf("new access = %+v, %v", got, err)
	}
	_, err = s.RotateRefresh(ctx, old.RefreshToken, newToken(p, a, 1))
	wantNotFound(t, "RotateRefresh(again)", err)
	_, err = s.RotateRefresh(ctx, "nope", newToken(p, a, 1))
	wantNotFound(t, "RotateRefresh(unknown)", err)
	// And the new one rotates in turn.
	if _, err := s.RotateRefresh(ctx, next.RefreshToken, newToken(p, a, 1)); err != nil {
		t.Errorf("RotateRefresh(next): %v", err)
	}
}

func testRotateRefreshConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, a := setup(t, s)
	old, err := s.CreateToken(ctx, newToken(p, a, 1))
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	const n = 10
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []store.Token
	)
	for range n {
		wg.Go(func() {
			next, err := s.RotateRefresh(ctx, old.RefreshToken, newToken(p, a, 1))
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, next)
				mu.Unlock()
			case !errors.Is(err, store.ErrNotFound):
				t.Errorf("RotateRefresh: %v, want success or ErrNotFound", err)
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d of %d concurrent rotations succeeded, want exactly 1", len(winners), n)
	}
	if got, err := s.TokenByAccess(ctx, winners[0].AccessToken); err != nil || got.Revoked {
		t.Errorf("winner's token = %+v, %v", got, err)
	}
}

func testAuthCodes(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, a := setup(t, s)
	c, err := s.CreateAuthCode(ctx, store.AuthCode{PortalID: p.ID, AppID: a.ID, UserID: 3, Scopes: []string{"pull"}, Expires: epoch.Add(30 * time.Second)})
	if err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	if len(c.Code) < 32 {
		t.Errorf("generated code %q too short", c.Code)
	}
	// Presented by another application: refused and not consumed, so the
	// application it was issued to can still use it.
	other, err := s.CreateApp(ctx, p.ID, "other", []string{"pull"})
	if err != nil {
		t.Fatalf("CreateApp: %v", err)
	}
	_, err = s.UseAuthCode(ctx, c.Code, other.ID, epoch)
	wantNotFound(t, "UseAuthCode(other app)", err)
	got, err := s.UseAuthCode(ctx, c.Code, a.ID, epoch)
	if err != nil {
		t.Fatalf("UseAuthCode: %v", err)
	}
	if got.Code != c.Code || got.PortalID != p.ID || got.AppID != a.ID || got.UserID != 3 ||
		!slices.Equal(got.Scopes, []string{"pull"}) || !got.Expires.Equal(c.Expires) {
		t.Errorf("UseAuthCode = %+v, want %+v", got, c)
	}
	_, err = s.UseAuthCode(ctx, c.Code, a.ID, epoch)
	wantNotFound(t, "UseAuthCode(used)", err)
	_, err = s.UseAuthCode(ctx, "nope", a.ID, epoch)
	wantNotFound(t, "UseAuthCode(unknown)", err)

	// Expiry: valid just before Expires, gone at Expires.
	exp, err := s.CreateAuthCode(ctx, store.AuthCode{Code: "fixed-code", PortalID: p.ID, AppID: a.ID, UserID: 3, Expires: epoch.Add(30 * time.Second)})
	if err != nil {
		t.Fatalf("CreateAuthCode fixed: %v", err)
	}
	if exp.Code != "fixed-code" {
		t.Errorf("CreateAuthCode changed the given code to %q", exp.Code)
	}
	_, err = s.UseAuthCode(ctx, "fixed-code", a.ID, epoch.Add(30*time.Second))
	wantNotFound(t, "UseAuthCode(expired)", err)
	_, err = s.UseAuthCode(ctx, "fixed-code", a.ID, epoch.Add(time.Hour))
	wantNotFound(t, "UseAuthCode(long expired)", err)

	// Concurrent use: exactly one wins.
	cc, err := s.CreateAuthCode(ctx, store.AuthCode{PortalID: p.ID, AppID: a.ID, UserID: 3, Expires: epoch.Add(time.Minute)})
	if err != nil {
		t.Fatalf("CreateAuthCode: %v", err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for range 10 {
		wg.Go(func() {
			_, err := s.UseAuthCode(ctx, cc.Code, a.ID, epoch)
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("UseAuthCode: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d concurrent UseAuthCode succeeded, want 1", wins)
	}
}

func testWebhooks(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, a := setup(t, s)
	w, err := s.CreateWebhook(ctx, p.ID, 5, a.ID, []string{"pull"})
	if err != nil {
		t.Fatalf("CreateWebhook: %v", err)
	}
	if !webhookRe.MatchString(w.Secret) || w.ID == 0 || w.CreatedAt.IsZero() || w.Revoked {
		t.Errorf("CreateWebhook = %+v", w)
	}
	got, err := s.Webhook(ctx, 5, w.Secret)
	if err != nil {
		t.Fatalf("Webhook: %v", err)
	}
	if got.ID != w.ID || got.PortalID != p.ID || got.UserID != 5 || got.AppID != a.ID || got.Secret != w.Secret ||
		!slices.Equal(got.Scopes, []string{"pull"}) || !got.CreatedAt.Equal(w.CreatedAt) || got.Revoked {
		t.Errorf("Webhook = %+v, want %+v", got, w)
	}
	_, err = s.Webhook(ctx, 5, "wrongsecret00000")
	wantNotFound(t, "Webhook(wrong secret)", err)
	_, err = s.Webhook(ctx, 6, w.Secret)
	wantNotFound(t, "Webhook(other user)", err)

	noApp, err := s.CreateWebhook(ctx, p.ID, 5, 0, []string{"pull", "im"})
	if err != nil {
		t.Fatalf("CreateWebhook without app: %v", err)
	}
	if noApp.Secret == w.Secret {
		t.Error("two webhooks got the same secret")
	}
	if got, err := s.Webhook(ctx, 5, noApp.Secret); err != nil || got.AppID != 0 || got.ID != noApp.ID {
		t.Errorf("Webhook(no app) = %+v, %v", got, err)
	}
}

func testChannelFor(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, a := setup(t, s)
	key := store.ChannelKey{PortalID: p.ID, AppID: a.ID, UserID: 1, Type: a.ClientID}
	c1, replaced, err := s.ChannelFor(ctx, key, epoch, channelTTL)
	if err != nil {
		t.Fatalf("ChannelFor: %v", err)
	}
	if replaced != nil {
		t.Errorf("first ChannelFor replaced = %+v, want nil", replaced)
	}
	if c1.Key() != key || !hex32.MatchString(c1.PrivateID) || !hex32.MatchString(c1.PublicID) || c1.PrivateID == c1.PublicID ||
		!c1.Start.Equal(epoch) || !c1.End.Equal(epoch.Add(channelTTL)) {
		t.Errorf("ChannelFor = %+v", c1)
	}

	// Still valid one nanosecond before End: same channel.
	c2, replaced, err := s.ChannelFor(ctx, key, c1.End.Add(-time.Nanosecond), channelTTL)
	if err != nil {
		t.Fatalf("ChannelFor again: %v", err)
	}
	if replaced != nil || !sameChannel(c2, c1) {
		t.Errorf("ChannelFor while valid = %+v (replaced %v), want %+v", c2, replaced, c1)
	}

	// Other keys are other channels: shared (no public id), other user, other type.
	shared, _, err := s.ChannelFor(ctx, store.ChannelKey{PortalID: p.ID, AppID: a.ID, Type: a.ClientID}, epoch, channelTTL)
	if err != nil {
		t.Fatalf("ChannelFor shared: %v", err)
	}
	if shared.PublicID != "" || !hex32.MatchString(shared.PrivateID) || shared.PrivateID == c1.PrivateID {
		t.Errorf("shared channel = %+v, want own private id and no public id", shared)
	}
	own, _, err := s.ChannelFor(ctx, store.ChannelKey{PortalID: p.ID, UserID: 1, Type: store.TypePrivate}, epoch, channelTTL)
	if err != nil {
		t.Fatalf("ChannelFor private: %v", err)
	}
	if own.PrivateID == c1.PrivateID {
		t.Error("user's own private channel equals the app channel")
	}

	// At End it is expired and replaced.
	later := c1.End
	c3, replaced, err := s.ChannelFor(ctx, key, later, channelTTL)
	if err != nil {
		t.Fatalf("ChannelFor after end: %v", err)
	}
	if replaced == nil || !sameChannel(*replaced, c1) {
		t.Errorf("replaced = %+v, want %+v", replaced, c1)
	}
	if c3.PrivateID == c1.PrivateID || c3.PublicID == c1.PublicID || !c3.Start.Equal(later) || !c3.End.Equal(later.Add(channelTTL)) || c3.Key() != key {
		t.Errorf("rotated channel = %+v", c3)
	}
	c4, replaced, err := s.ChannelFor(ctx, key, later.Add(time.Second), channelTTL)
	if err != nil || replaced != nil || !sameChannel(c4, c3) {
		t.Errorf("ChannelFor after rotation = %+v, %v, %v; want %+v", c4, replaced, err, c3)
	}
	// The shared channel was untouched.
	if s2, r, err := s.ChannelFor(ctx, shared.Key(), epoch.Add(time.Minute), channelTTL); err != nil || r != nil || !sameChannel(s2, shared) {
		t.Errorf("shared after rotation of another = %+v, %v, %v", s2, r, err)
	}
}

func sameChannel(a, b store.Channel) bool {
	return a.Key() == b.Key() && a.PrivateID == b.PrivateID && a.PublicID == b.PublicID &&
		a.Start.Equal(b.Start) && a.End.Equal(b.End)
}

func testChannelForConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, a := setup(t, s)
	key := store.ChannelKey{PortalID: p.ID, AppID: a.ID, UserID: 0, Type: a.ClientID}
	old, _, err := s.ChannelFor(ctx, key, epoch, channelTTL)
	if err != nil {
		t.Fatalf("ChannelFor: %v", err)
	}
	now := old.End.Add(time.Minute)
	const n = 10
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		results  []store.Channel
		replaced int
	)
	for range n {
		wg.Go(func() {
			c, r, err := s.ChannelFor(ctx, key, now, channelTTL)
			if err != nil {
				t.Errorf("ChannelFor: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			results = append(results, c)
			if r != nil {
				replaced++
				if !sameChannel(*r, old) {
					t.Errorf("replaced = %+v, want %+v", *r, old)
				}
			}
		})
	}
	wg.Wait()
	if replaced != 1 {
		t.Errorf("%d callers got replaced != nil, want exactly 1", replaced)
	}
	for _, c := range results {
		if !sameChannel(c, results[0]) {
			t.Errorf("concurrent callers got different channels: %+v vs %+v", c, results[0])
		}
	}
	if len(results) > 0 && results[0].PrivateID == old.PrivateID {
		t.Error("channel was not rotated")
	}
}

func testPublicChannels(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, a := setup(t, s)
	// User 1 already has an app channel; 2 and 3 do not.
	key1 := store.ChannelKey{PortalID: p.ID, AppID: a.ID, UserID: 1, Type: a.ClientID}
	c1, _, err := s.ChannelFor(ctx, key1, epoch, channelTTL)
	if err != nil {
		t.Fatalf("ChannelFor: %v", err)
	}
	now := epoch.Add(time.Hour)
	got, replaced, err := s.PublicChannels(ctx, p.ID, a.ID, []int64{1, 2, 3, 2, 0}, now, channelTTL)
	if err != nil {
		t.Fatalf("PublicChannels: %v", err)
	}
	if len(replaced) != 0 {
		t.Errorf("replaced = %+v, want none", replaced)
	}
	if len(got) != 3 {
		t.Fatalf("PublicChannels = %d channels, want 3 (users 1,2,3): %+v", len(got), got)
	}
	if !sameChannel(got[1], c1) {
		t.Errorf("user 1 = %+v, want existing %+v", got[1], c1)
	}
	for _, id := range []int64{2, 3} {
		c := got[id]
		if c.Key() != (store.ChannelKey{PortalID: p.ID, AppID: a.ID, UserID: id, Type: a.ClientID}) || !hex32.MatchString(c.PublicID) || !c.Start.Equal(now) {
			t.Errorf("user %d = %+v", id, c)
		}
		// Created channels are the ones ChannelFor sees afterwards.
		if again, r, err := s.ChannelFor(ctx, c.Key(), now, channelTTL); err != nil || r != nil || !sameChannel(again, c) {
			t.Errorf("ChannelFor(user %d) = %+v, %v, %v; want %+v", id, again, r, err, c)
		}
	}

	// After user 1's channel ends it is replaced, and reported.
	after := c1.End
	got, replaced, err = s.PublicChannels(ctx, p.ID, a.ID, []int64{1}, after, channelTTL)
	if err != nil {
		t.Fatalf("PublicChannels after end: %v", err)
	}
	if len(replaced) != 1 || !sameChannel(replaced[0], c1) {
		t.Errorf("replaced = %+v, want [%+v]", replaced, c1)
	}
	if got[1].PublicID == c1.PublicID || !got[1].Start.Equal(after) {
		t.Errorf("user 1 after end = %+v", got[1])
	}

	// appID 0: the users' own "private" channels.
	own, _, err := s.PublicChannels(ctx, p.ID, 0, []int64{1}, now, channelTTL)
	if err != nil {
		t.Fatalf("PublicChannels(no app): %v", err)
	}
	if c := own[1]; c.Type != store.TypePrivate || c.AppID != 0 || c.PublicID == got[1].PublicID {
		t.Errorf("own private channel = %+v", c)
	}
	_, _, err = s.PublicChannels(ctx, p.ID, a.ID+1000, []int64{1}, now, channelTTL)
	wantNotFound(t, "PublicChannels(unknown app)", err)

	if empty, _, err := s.PublicChannels(ctx, p.ID, a.ID, nil, now, channelTTL); err != nil || len(empty) != 0 {
		t.Errorf("PublicChannels(no users) = %v, %v", empty, err)
	}
}

func testPushQueue(t *testing.T, s store.Store) {
	ctx := t.Context()
	j, err := s.EnqueuePush(ctx, []byte(`{"a":1}`), epoch)
	if err != nil {
		t.Fatalf("EnqueuePush: %v", err)
	}
	if j.ID == 0 || string(j.Payload) != `{"a":1}` || j.Attempts != 0 || !j.NextAttempt.Equal(epoch) || !j.CreatedAt.Equal(epoch) {
		t.Errorf("EnqueuePush = %+v", j)
	}
	wantQueueLen(t, s, 1)
	got, err := s.ClaimPush(ctx, epoch, time.Minute)
	if err != nil {
		t.Fatalf("ClaimPush: %v", err)
	}
	if got.ID != j.ID || string(got.Payload) != `{"a":1}` || !got.NextAttempt.Equal(epoch.Add(time.Minute)) || !got.CreatedAt.Equal(epoch) {
		t.Errorf("ClaimPush = %+v, want job %d leased to %v", got, j.ID, epoch.Add(time.Minute))
	}
	wantQueueLen(t, s, 1) // a claimed job is still queued until completed
	if err := s.CompletePush(ctx, j.ID); err != nil {
		t.Fatalf("CompletePush: %v", err)
	}
	wantQueueLen(t, s, 0)
	_, err = s.ClaimPush(ctx, epoch.Add(time.Hour), time.Minute)
	wantNotFound(t, "ClaimPush after complete", err)
	wantNotFound(t, "CompletePush twice", s.CompletePush(ctx, j.ID))
	wantNotFound(t, "RetryPush unknown", s.RetryPush(ctx, j.ID, epoch))
}

func testPushDue(t *testing.T, s store.Store) {
	ctx := t.Context()
	later, err := s.EnqueuePush(ctx, []byte("later"), epoch.Add(time.Second))
	if err != nil {
		t.Fatalf("EnqueuePush: %v", err)
	}
	_, err = s.ClaimPush(ctx, epoch, time.Minute)
	wantNotFound(t, "ClaimPush before due", err)
	first, err := s.EnqueuePush(ctx, []byte("first"), epoch)
	if err != nil {
		t.Fatalf("EnqueuePush: %v", err)
	}
	now := epoch.Add(2 * time.Second)
	for _, want := range []int64{first.ID, later.ID} {
		got, err := s.ClaimPush(ctx, now, time.Minute)
		if err != nil {
			t.Fatalf("ClaimPush: %v", err)
		}
		if got.ID != want {
			t.Errorf("ClaimPush = job %d, want %d (oldest due first)", got.ID, want)
		}
	}
}

func testPushLease(t *testing.T, s store.Store) {
	ctx := t.Context()
	j, err := s.EnqueuePush(ctx, []byte("x"), epoch)
	if err != nil {
		t.Fatalf("EnqueuePush: %v", err)
	}
	if _, err := s.ClaimPush(ctx, epoch, time.Minute); err != nil {
		t.Fatalf("ClaimPush: %v", err)
	}
	_, err = s.ClaimPush(ctx, epoch.Add(59*time.Second), time.Minute)
	wantNotFound(t, "ClaimPush within lease", err)
	got, err := s.ClaimPush(ctx, epoch.Add(time.Minute), time.Minute)
	if err != nil {
		t.Fatalf("ClaimPush after lease: %v", err)
	}
	if got.ID != j.ID {
		t.Errorf("ClaimPush after lease = job %d, want %d", got.ID, j.ID)
	}
}

func testPushRetry(t *testing.T, s store.Store) {
	ctx := t.Context()
	j, err := s.EnqueuePush(ctx, []byte("x"), epoch)
	if err != nil {
		t.Fatalf("EnqueuePush: %v", err)
	}
	next := epoch
	for want := 1; want <= 2; want++ {
		if _, err := s.ClaimPush(ctx, next, time.Minute); err != nil {
			t.Fatalf("ClaimPush: %v", err)
		}
		next = next.Add(time.Hour)
		if err := s.RetryPush(ctx, j.ID, next); err != nil {
			t.Fatalf("RetryPush: %v", err)
		}
		_, err := s.ClaimPush(ctx, next.Add(-time.Nanosecond), time.Minute)
		wantNotFound(t, "ClaimPush before retry time", err)
		got, err := s.ClaimPush(ctx, next, 0)
		if err != nil {
			t.Fatalf("ClaimPush at retry time: %v", err)
		}
		if got.ID != j.ID || got.Attempts != want {
			t.Errorf("ClaimPush = job %d attempts %d, want job %d attempts %d", got.ID, got.Attempts, j.ID, want)
		}
	}
}

func testPushClaimConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 5
	for i := range n {
		if _, err := s.EnqueuePush(ctx, []byte{byte('a' + i)}, epoch); err != nil {
			t.Fatalf("EnqueuePush: %v", err)
		}
	}
	ids := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			j, err := s.ClaimPush(ctx, epoch, time.Minute)
			if err != nil {
				t.Errorf("ClaimPush: %v", err)
				return
			}
			ids[i] = j.ID
		})
	}
	wg.Wait()
	slices.Sort(ids)
	if len(slices.Compact(slices.Clone(ids))) != n || ids[0] == 0 {
		t.Errorf("concurrent claims got jobs %v, want %d different", ids, n)
	}
	_, err := s.ClaimPush(ctx, epoch, time.Minute)
	wantNotFound(t, "ClaimPush with all leased", err)
}

func wantQueueLen(t *testing.T, s store.Store, want int64) {
	t.Helper()
	if n, err := s.PushQueueLen(t.Context()); err != nil || n != want {
		t.Errorf("PushQueueLen = %d, %v; want %d", n, err, want)
	}
}
