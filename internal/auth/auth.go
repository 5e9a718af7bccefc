// Package auth is pushpull's OAuth 2.0 authorization server and the REST
// authenticator: it issues and rotates application tokens at /oauth/token/
// and resolves a REST call's access token or webhook to a rest.Caller.
//
// Bitrix splits these between its OAuth server and the portal; pushpull is
// both, so server_endpoint and client_endpoint point at itself.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/rest"
	"github.com/pushpull/pushpull/internal/store"
)

// Options configure a Service.
type Options struct {
	// AccessTTL is an access token's life: Bitrix's is one hour.
	AccessTTL time.Duration
	// RefreshTTL is a refresh token's life (Bitrix documents 180 days);
	// each refresh token works once.
	RefreshTTL time.Duration
	// CodeTTL is an authorization code's life: Bitrix's is 30 seconds.
	CodeTTL time.Duration
	// BaseURL is how clients reach this server, e.g. https://push.example.com;
	// the REST endpoints in token responses are built from it.
	BaseURL string
	Now     func() time.Time
	Log     *slog.Logger
	// Used, when set, is told of every access token that authenticates a
	// call, by its store.HashSecret (the operator console's "last use").
	Used func(id string, at time.Time)
}

// Service issues tokens and authenticates REST calls.
type Service struct {
	st  store.Store
	opt Options

	portalMu sync.Mutex
	portalID int64 // nonzero once cached is read
	cached   store.Portal

	grants grantCounters
}

// New returns a Service over st. Zero TTLs get Bitrix's values.
func New(st store.Store, opt Options) *Service {
	if opt.AccessTTL <= 0 {
		opt.AccessTTL = time.Hour
	}
	if opt.RefreshTTL <= 0 {
		opt.RefreshTTL = 180 * 24 * time.Hour
	}
	if opt.CodeTTL <= 0 {
		opt.CodeTTL = 30 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	opt.BaseURL = strings.TrimRight(opt.BaseURL, "/")
	return &Service{st: st, opt: opt}
}

// Authenticate implements rest.Authenticator. An access token wins over a
// webhook when a request carries both, as Bitrix consults OAuth first.
func (s *Service) Authenticate(ctx context.Context, c rest.Credential) (rest.Caller, error) {
	if c.AccessToken != "" {
		return s.authenticateToken(ctx, c.AccessToken)
	}
	return s.authenticateWebhook(ctx, c)
}

func (s *Service) authenticateToken(ctx context.Context, access string) (rest.Caller, error) {
	tok, err := s.st.TokenByAccess(ctx, access)
	if errors.Is(err, store.ErrNotFound) {
		return rest.Caller{}, rest.InvalidToken()
	}
	if err != nil {
		return rest.Caller{}, fmt.Errorf("auth: look up token: %w", err)
	}
	if tok.Revoked {
		return rest.Caller{}, rest.InvalidToken()
	}
	now := s.opt.Now()
	if !now.Before(tok.AccessExpires) {
		return rest.Caller{}, rest.ExpiredToken()
	}
	if s.opt.Used != nil {
		s.opt.Used(store.HashSecret(access), now)
	}
	app, err := s.appByID(ctx, tok.PortalID, tok.AppID)
	if err != nil {
		return rest.Caller{}, err
	}
	user, err := s.activeUser(ctx, tok.PortalID, tok.UserID)
	if err != nil {
		return rest.Caller{}, err
	}
	portal, err := s.portal(ctx)
	if err != nil {
		return rest.Caller{}, err
	}
	return rest.Caller{
		PortalID: tok.PortalID, UserID: tok.UserID, AppID: app.ID, Admin: user.Admin,
		Scopes: tok.Scopes, Kind: rest.KindOAuth, ClientID: app.ClientID, Domain: portal.Domain,
	}, nil
}

func (s *Service) authenticateWebhook(ctx context.Context, c rest.Credential) (rest.Caller, error) {
	if c.WebhookUser <= 0 || c.WebhookSecret == "" {
		return rest.Caller{}, rest.InvalidCredentials()
	}
	wh, err := s.st.Webhook(ctx, c.WebhookUser, c.WebhookSecret)
	if errors.Is(err, store.ErrNotFound) {
		return rest.Caller{}, rest.InvalidCredentials()
	}
	if err != nil {
		return rest.Caller{}, fmt.Errorf("auth: look up webhook: %w", err)
	}
	if wh.Revoked {
		return rest.Caller{}, rest.InvalidCredentials()
	}
	user, err := s.activeUser(ctx, wh.PortalID, wh.UserID)
	if err != nil {
		return rest.Caller{}, err
	}
	portal, err := s.portal(ctx)
	if err != nil {
		return rest.Caller{}, err
	}
	caller := rest.Caller{
		PortalID: wh.PortalID, UserID: wh.UserID, Admin: user.Admin,
		Scopes: wh.Scopes, Kind: rest.KindWebhook, Domain: portal.Domain,
		ClientID: WebhookClientID(wh.ID),
	}
	if wh.AppID != 0 {
		app, err := s.appByID(ctx, wh.PortalID, wh.AppID)
		if err != nil {
			return rest.Caller{}, err
		}
		caller.AppID, caller.ClientID = app.ID, app.ClientID
	}
	return caller, nil
}

// portal returns the default portal, read from the registry once: it is
// created at the first start and never changes while the server runs, and
// every REST call needs its domain.
func (s *Service) portal(ctx context.Context) (store.Portal, error) {
	s.portalMu.Lock()
	defer s.portalMu.Unlock()
	if s.portalID != 0 {
		return s.cached, nil
	}
	p, err := s.st.DefaultPortal(ctx)
	if err != nil {
		return store.Portal{}, fmt.Errorf("auth: portal: %w", err)
	}
	s.cached, s.portalID = p, p.ID
	return p, nil
}

// WebhookClientID is the application scope of a webhook created without an
// application: its events and channels are its own, as an app's are.
func WebhookClientID(webhookID int64) string { return fmt.Sprintf("webhook.%d", webhookID) }

func (s *Service) appByID(ctx context.Context, portalID, appID int64) (store.App, error) {
	apps, err := s.st.Apps(ctx, portalID)
	if err != nil {
		return store.App{}, fmt.Errorf("auth: apps: %w", err)
	}
	for _, a := range apps {
		if a.ID == appID {
			return a, nil
		}
	}
	return store.App{}, rest.ApplicationNotFound()
}

func (s *Service) activeUser(ctx context.Context, portalID, userID int64) (store.User, error) {
	u, err := s.st.User(ctx, portalID, userID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !u.Active) {
		return store.User{}, rest.AuthorizationError()
	}
	if err != nil {
		return store.User{}, fmt.Errorf("auth: user: %w", err)
	}
	return u, nil
}

// TokenResponse is the body of a successful /oauth/token/ answer, with
// every field Bitrix's OAuth server sends (docs/protocol.md, "OAuth 2.0 and
// webhooks").
type TokenResponse struct {
	AccessToken    string `json:"access_token"`
	Expires        int64  `json:"expires"`
	ExpiresIn      int64  `json:"expires_in"`
	Scope          string `json:"scope"`
	Domain         string `json:"domain"`
	ServerEndpoint string `json:"server_endpoint"`
	ClientEndpoint string `json:"client_endpoint"`
	MemberID       string `json:"member_id"`
	UserID         int64  `json:"user_id"`
	RefreshToken   string `json:"refresh_token"`
	Status         string `json:"status"`
}

// Issue creates a token pair for a user of app, for operators (pushpull
// token issue) and for the code and refresh grants.
func (s *Service) Issue(ctx context.Context, app store.App, userID int64) (TokenResponse, error) {
	now := s.opt.Now()
	tok, err := s.st.CreateToken(ctx, s.newToken(app, userID, now))
	if err != nil {
		return TokenResponse{}, fmt.Errorf("auth: issue token: %w", err)
	}
	return s.response(ctx, tok)
}

// MintCode creates an authorization code, for apps that do the standard
// code exchange against an operator-created grant (pushpull token code).
func (s *Service) MintCode(ctx context.Context, app store.App, userID int64) (store.AuthCode, error) {
	code, err := s.st.CreateAuthCode(ctx, store.AuthCode{
		PortalID: app.PortalID, AppID: app.ID, UserID: userID, Scopes: app.Scopes,
		Expires: s.opt.Now().Add(s.opt.CodeTTL),
	})
	if err != nil {
		return store.AuthCode{}, fmt.Errorf("auth: mint code: %w", err)
	}
	return code, nil
}

func (s *Service) newToken(app store.App, userID int64, now time.Time) store.Token {
	return store.Token{
		PortalID: app.PortalID, AppID: app.ID, UserID: userID, Scopes: app.Scopes,
		AccessExpires: now.Add(s.opt.AccessTTL), RefreshExpires: now.Add(s.opt.RefreshTTL),
		CreatedAt: now,
	}
}

func (s *Service) response(ctx context.Context, tok store.Token) (TokenResponse, error) {
	portal, err := s.portal(ctx)
	if err != nil {
		return TokenResponse{}, err
	}
	domain := portal.Domain
	if u, err := url.Parse(s.opt.BaseURL); err == nil && u.Host != "" {
		domain = u.Host
	}
	return TokenResponse{
		AccessToken:    tok.AccessToken,
		Expires:        tok.AccessExpires.Unix(),
		ExpiresIn:      int64(s.opt.AccessTTL / time.Second),
		Scope:          strings.Join(tok.Scopes, ","),
		Domain:         domain,
		ServerEndpoint: s.opt.BaseURL + "/rest/",
		ClientEndpoint: s.opt.BaseURL + "/rest/",
		MemberID:       portal.MemberID,
		UserID:         tok.UserID,
		RefreshToken:   tok.RefreshToken,
		Status:         "L", // a local application, in Bitrix's terms
	}, nil
}
