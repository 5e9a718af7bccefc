package console

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/store"
)

// TokenUses remembers when each access token last authenticated a REST
// call on this node, since it started: the registry keeps no such field,
// and writing one on every call would put a registry write on the REST
// path. It holds at most maxTokenUses tokens; beyond that new ones are
// not recorded (the page then shows no last use for them).
type TokenUses struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const maxTokenUses = 100_000

// NewTokenUses returns an empty record.
func NewTokenUses() *TokenUses { return &TokenUses{last: make(map[string]time.Time)} }

// Used records that the token whose store.HashSecret is id was used at.
func (u *TokenUses) Used(id string, at time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.last[id]; ok || len(u.last) < maxTokenUses {
		u.last[id] = at
	}
}

func (u *TokenUses) get(id string) (time.Time, bool) {
	if u == nil {
		return time.Time{}, false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	t, ok := u.last[id]
	return t, ok
}

// tokensShown bounds the token list; the count covers them all.
const tokensShown = 500

type registryView struct {
	Apps []appView `json:"apps"`
	// Listed is false when the registry engine cannot list users, tokens
	// and webhooks (store.Lister).
	Listed      bool          `json:"listed"`
	Users       []userView    `json:"users"`
	Tokens      []tokenView   `json:"tokens"`
	TokensTotal int           `json:"tokensTotal"`
	Webhooks    []webhookView `json:"webhooks"`
	// Mode is "personal" or "shared"; Tenants, shared mode's portals
	// (the first tenantsShown, by client id), null in personal mode.
	Mode         string       `json:"mode"`
	Tenants      []tenantView `json:"tenants"`
	TenantsTotal int          `json:"tenantsTotal"`
}

type appView struct {
	ID       int64    `json:"id"`
	ClientID string   `json:"clientId"`
	Name     string   `json:"name"`
	Scopes   []string `json:"scopes"`
	Created  int64    `json:"created"`
}

type userView struct {
	ID      int64 `json:"id"`
	Active  bool  `json:"active"`
	Admin   bool  `json:"admin"`
	Created int64 `json:"created"`
}

type tokenView struct {
	ID             string   `json:"id"`
	AppID          int64    `json:"appId"`
	UserID         int64    `json:"userId"`
	Scopes         []string `json:"scopes"`
	AccessExpires  int64    `json:"accessExpires"`
	RefreshExpires int64    `json:"refreshExpires"`
	Revoked        bool     `json:"revoked"`
	Created        int64    `json:"created"`
	LastUsed       int64    `json:"lastUsed"` // 0: not since this node started
}

type webhookView struct {
	ID      int64    `json:"id"`
	UserID  int64    `json:"userId"`
	AppID   int64    `json:"appId"`
	Scopes  []string `json:"scopes"`
	Revoked bool     `json:"revoked"`
	Created int64    `json:"created"`
}

// serveRegistry lists the registry without a single secret: client
// secrets, tokens and webhook secrets are stored as hashes and shown
// nowhere; a token is named by its hash.
func (c *Console) serveRegistry(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v := registryView{Apps: []appView{}, Users: []userView{}, Tokens: []tokenView{}, Webhooks: []webhookView{}}
	apps, err := c.opt.Store.Apps(ctx, c.opt.PortalID)
	if err != nil {
		writeError(w, http.StatusBadGateway, "REGISTRY_ERROR", err.Error())
		return
	}
	for _, a := range apps {
		v.Apps = append(v.Apps, appView{ID: a.ID, ClientID: a.ClientID, Name: a.Name, Scopes: a.Scopes, Created: unixMilli(a.CreatedAt)})
	}
	if err := c.listTenants(ctx, &v); err != nil {
		writeError(w, http.StatusBadGateway, "REGISTRY_ERROR", err.Error())
		return
	}
	l, ok := c.opt.Store.(store.Lister)
	if !ok {
		writeJSON(w, http.StatusOK, v)
		return
	}
	v.Listed = true
	users, err := l.Users(ctx, c.opt.PortalID)
	if err != nil {
		writeError(w, http.StatusBadGateway, "REGISTRY_ERROR", err.Error())
		return
	}
	for _, u := range users {
		v.Users = append(v.Users, userView{ID: u.ID, Active: u.Active, Admin: u.Admin, Created: unixMilli(u.CreatedAt)})
	}
	tokens, total, err := l.Tokens(ctx, c.opt.PortalID, tokensShown)
	if err != nil {
		writeError(w, http.StatusBadGateway, "REGISTRY_ERROR", err.Error())
		return
	}
	v.TokensTotal = total
	for _, t := range tokens {
		tv := tokenView{ID: t.ID, AppID: t.AppID, UserID: t.UserID, Scopes: t.Scopes,
			AccessExpires: unixMilli(t.AccessExpires), RefreshExpires: unixMilli(t.RefreshExpires),
			Revoked: t.Revoked, Created: unixMilli(t.CreatedAt)}
		if at, ok := c.opt.Uses.get(t.ID); ok {
			tv.LastUsed = at.UnixMilli()
		}
		v.Tokens = append(v.Tokens, tv)
	}
	hooks, err := l.Webhooks(ctx, c.opt.PortalID)
	if err != nil {
		writeError(w, http.StatusBadGateway, "REGISTRY_ERROR", err.Error())
		return
	}
	for _, h := range hooks {
		v.Webhooks = append(v.Webhooks, webhookView{ID: h.ID, UserID: h.UserID, AppID: h.AppID, Scopes: h.Scopes,
			Revoked: h.Revoked, Created: unixMilli(h.CreatedAt)})
	}
	writeJSON(w, http.StatusOK, v)
}

// serveRevoke revokes a token pair by its id (the hash the list shows):
// REST refuses its access token from then on, and its refresh token.
func (c *Console) serveRevoke(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ID string `json:"id"`
	}
	if err := decodeJSON(r, &in); err != nil {
		badRequest(w, err.Error())
		return
	}
	if !isTokenID(in.ID) {
		badRequest(w, "id: the 64 lower-case hex characters of a token in the list")
		return
	}
	l, ok := c.opt.Store.(store.Lister)
	if !ok {
		writeError(w, http.StatusNotImplemented, "NOT_AVAILABLE", "this registry engine cannot revoke by id; use pushpull token revoke")
		return
	}
	err := l.RevokeTokenByID(r.Context(), in.ID)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no token has this id")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadGateway, "REGISTRY_ERROR", err.Error())
		return
	}
	c.opt.Log.Info("console: token revoked", "id", in.ID[:12], "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"revoked": true})
}

func isTokenID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
