package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/rest"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/store/sqlite"
	"github.com/pushpull/pushpull/internal/testkit"
)

type fixture struct {
	st   store.Store
	svc  *Service
	app  store.App
	now  time.Time
	srv  *httptest.Server
	user int64
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/registry.db", "push.example")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, err := st.DefaultPortal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	app, err := st.CreateApp(ctx, p.ID, "test", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutUser(ctx, store.User{PortalID: p.ID, ID: 7, Active: true}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, app: app, now: time.Unix(1_800_000_000, 0), user: 7}
	f.svc = New(st, Options{BaseURL: "https://push.example/", Now: func() time.Time { return f.now }})
	f.srv = httptest.NewServer(f.svc.TokenHandler())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) token(t *testing.T, form url.Values, post bool) (int, map[string]any) {
	t.Helper()
	status, _, body := f.tokenHeader(t, form, post)
	return status, body
}

func (f *fixture) tokenHeader(t *testing.T, form url.Values, post bool) (int, http.Header, map[string]any) {
	t.Helper()
	if post {
		return testkit.JSON(t)(http.PostForm(f.srv.URL+"/oauth/token/", form))
	}
	return testkit.JSON(t)(http.Get(f.srv.URL + "/oauth/token/?" + form.Encode()))
}

func TestCodeExchangeAndRefreshRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	code, err := f.svc.MintCode(ctx, f.app, f.user)
	if err != nil {
		t.Fatal(err)
	}
	status, hdr, body := f.tokenHeader(t, url.Values{"grant_type": {"authorization_code"}, "client_id": {f.app.ClientID},
		"client_secret": {f.app.ClientSecret}, "code": {code.Code}}, false)
	if status != 200 {
		t.Fatalf("code exchange: %d %v", status, body)
	}
	if hdr.Get("Cache-Control") != "no-store" || hdr.Get("Pragma") != "no-cache" {
		t.Errorf("token answer may be cached: Cache-Control %q, Pragma %q", hdr.Get("Cache-Control"), hdr.Get("Pragma"))
	}
	for _, k := range []string{"access_token", "refresh_token", "expires", "expires_in", "scope", "domain", "server_endpoint", "client_endpoint", "member_id", "user_id", "status"} {
		if _, ok := body[k]; !ok {
			t.Errorf("response lacks %q", k)
		}
	}
	if body["expires"].(float64) != float64(f.now.Add(time.Hour).Unix()) || body["expires_in"].(float64) != 3600 ||
		body["scope"] != "pull" || body["client_endpoint"] != "https://push.example/rest/" || body["domain"] != "push.example" ||
		body["user_id"].(float64) != 7 || len(body["member_id"].(string)) != 32 {
		t.Fatalf("response %v", body)
	}
	// The code works once.
	if status, body := f.token(t, url.Values{"grant_type": {"authorization_code"}, "client_id": {f.app.ClientID},
		"client_secret": {f.app.ClientSecret}, "code": {code.Code}}, true); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("second use of the code: %d %v", status, body)
	}

	access, refresh := body["access_token"].(string), body["refresh_token"].(string)
	refreshForm := url.Values{"grant_type": {"refresh_token"}, "client_id": {f.app.ClientID}, "client_secret": {f.app.ClientSecret}, "refresh_token": {refresh}}
	status, next := f.token(t, refreshForm, true)
	if status != 200 || next["access_token"] == access || next["refresh_token"] == refresh {
		t.Fatalf("refresh: %d %v", status, next)
	}
	// Rotation: the old refresh token and its access token are dead.
	if status, body := f.token(t, refreshForm, true); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reused refresh token: %d %v", status, body)
	}
	if _, err := f.svc.Authenticate(ctx, rest.Credential{AccessToken: access, Present: true}); !isCode(err, rest.CodeInvalidToken) {
		t.Fatalf("old access token after rotation: %v", err)
	}
	c, err := f.svc.Authenticate(ctx, rest.Credential{AccessToken: next["access_token"].(string), Present: true})
	if err != nil || c.UserID != 7 || c.ClientID != f.app.ClientID || c.Kind != rest.KindOAuth || !c.HasScope("pull") {
		t.Fatalf("new access token: %+v %v", c, err)
	}
}

func isCode(err error, code string) bool {
	var re *rest.Error
	return errors.As(err, &re) && re.Code == code
}

func TestTokenEndpointErrors(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		form   url.Values
		status int
		code   string
	}{
		{url.Values{}, 400, "invalid_request"},
		{url.Values{"grant_type": {"refresh_token"}, "client_id": {f.app.ClientID}, "client_secret": {"wrong"}, "refresh_token": {"x"}}, 401, "invalid_client"},
		{url.Values{"grant_type": {"refresh_token"}, "client_id": {"local.nope"}, "client_secret": {"x"}, "refresh_token": {"x"}}, 401, "invalid_client"},
		{url.Values{"grant_type": {"refresh_token"}, "client_id": {f.app.ClientID}, "client_secret": {f.app.ClientSecret}, "refresh_token": {"unknown"}}, 400, "invalid_grant"},
		{url.Values{"grant_type": {"authorization_code"}, "client_id": {f.app.ClientID}, "client_secret": {f.app.ClientSecret}}, 400, "invalid_request"},
		{url.Values{"grant_type": {"password"}, "client_id": {f.app.ClientID}, "client_secret": {f.app.ClientSecret}}, 400, "invalid_request"},
	}
	for _, tc := range cases {
		status, body := f.token(t, tc.form, true)
		if status != tc.status || body["error"] != tc.code || body["error_description"] == "" {
			t.Errorf("%v: %d %v, want %d %s", tc.form, status, body, tc.status, tc.code)
		}
	}
	// Each refusal is counted by its grant type and code.
	want := map[[2]string]uint64{
		{"other", "invalid_request"}:              2,
		{"refresh_token", "invalid_client"}:       2,
		{"refresh_token", "invalid_grant"}:        1,
		{"authorization_code", "invalid_request"}: 1,
	}
	for _, g := range f.svc.Grants() {
		if n := want[[2]string{g.GrantType, g.Outcome}]; g.Count != n {
			t.Errorf("grants %s/%s = %d, want %d", g.GrantType, g.Outcome, g.Count, n)
		}
	}
	// A code presented by another application is refused without being
	// used up: the application it was issued to still gets its token.
	other, err := f.st.CreateApp(context.Background(), f.app.PortalID, "other", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	stolen, _ := f.svc.MintCode(context.Background(), f.app, f.user)
	if status, body := f.token(t, url.Values{"grant_type": {"authorization_code"}, "client_id": {other.ClientID},
		"client_secret": {other.ClientSecret}, "code": {stolen.Code}}, true); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("code of another client: %d %v", status, body)
	}
	if status, body := f.token(t, url.Values{"grant_type": {"authorization_code"}, "client_id": {f.app.ClientID},
		"client_secret": {f.app.ClientSecret}, "code": {stolen.Code}}, true); status != 200 {
		t.Fatalf("the right client after a wrong one: %d %v", status, body)
	}
	// An expired code is refused.
	code, _ := f.svc.MintCode(context.Background(), f.app, f.user)
	f.now = f.now.Add(31 * time.Second)
	if status, body := f.token(t, url.Values{"grant_type": {"authorization_code"}, "client_id": {f.app.ClientID},
		"client_secret": {f.app.ClientSecret}, "code": {code.Code}}, true); status != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("expired code: %d %v", status, body)
	}
}

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok, err := f.svc.Issue(ctx, f.app, f.user)
	if err != nil {
		t.Fatal(err)
	}
	cred := rest.Credential{AccessToken: tok.AccessToken, Present: true}
	if _, err := f.svc.Authenticate(ctx, rest.Credential{AccessToken: "nope", Present: true}); !isCode(err, rest.CodeInvalidToken) {
		t.Fatalf("unknown token: %v", err)
	}
	f.now = f.now.Add(time.Hour)
	if _, err := f.svc.Authenticate(ctx, cred); !isCode(err, rest.CodeExpiredToken) {
		t.Fatalf("expired token: %v", err)
	}
	f.now = f.now.Add(-time.Minute)
	if err := f.st.RevokeToken(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, cred); !isCode(err, rest.CodeInvalidToken) {
		t.Fatalf("revoked token: %v", err)
	}
	// An inactive user cannot call.
	tok2, _ := f.svc.Issue(ctx, f.app, f.user)
	p, _ := f.st.DefaultPortal(ctx)
	if err := f.st.PutUser(ctx, store.User{PortalID: p.ID, ID: f.user, Active: false}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, rest.Credential{AccessToken: tok2.AccessToken, Present: true}); !isCode(err, rest.CodeAuthorizationError) {
		t.Fatalf("inactive user: %v", err)
	}
	if err := f.st.PutUser(ctx, store.User{PortalID: p.ID, ID: f.user, Active: true, Admin: true}); err != nil {
		t.Fatal(err)
	}

	// Webhooks: with an application, and without (their own scope).
	wh, err := f.st.CreateWebhook(ctx, p.ID, f.user, f.app.ID, []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.svc.Authenticate(ctx, rest.Credential{WebhookUser: f.user, WebhookSecret: wh.Secret, Present: true})
	if err != nil || c.Kind != rest.KindWebhook || c.ClientID != f.app.ClientID || !c.Admin {
		t.Fatalf("webhook: %+v %v", c, err)
	}
	bare, _ := f.st.CreateWebhook(ctx, p.ID, f.user, 0, []string{"pull"})
	c, err = f.svc.Authenticate(ctx, rest.Credential{WebhookUser: f.user, WebhookSecret: bare.Secret, Present: true})
	if err != nil || !strings.HasPrefix(c.ClientID, "webhook.") || c.AppID != 0 {
		t.Fatalf("webhook without app: %+v %v", c, err)
	}
	for _, cred := range []rest.Credential{{WebhookUser: f.user, WebhookSecret: "wrongwrongwrong1"}, {WebhookUser: 99, WebhookSecret: wh.Secret}, {WebhookUser: 0}} {
		cred.Present = true
		if _, err := f.svc.Authenticate(ctx, cred); !isCode(err, rest.CodeInvalidCredentials) {
			t.Errorf("%+v: %v", cred, err)
		}
	}
}
