package auth

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/pushpull/pushpull/internal/store"
)

// oauthError is an OAuth error body: {"error","error_description"}.
type oauthError struct {
	status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func invalidRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", desc}
}

func invalidClient() *oauthError {
	return &oauthError{http.StatusUnauthorized, "invalid_client", "Invalid client credentials"}
}

func invalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", desc}
}

// maxTokenRequest bounds a token request body; the form has five short fields.
const maxTokenRequest = 16 << 10

// TokenHandler serves /oauth/token/. It takes a GET query (as Bitrix's docs
// show) or a POST form (as b24jssdk sends), with grant_type
// authorization_code or refresh_token.
//
// It serves pages on any origin (CORS): b24jssdk's B24OAuth refreshes from
// the page, and its form POST needs no preflight, so without CORS the
// server rotated the pair and the page could not read the new one, losing
// both. Every credential is in the request itself, never in a cookie, so a
// page learns nothing it could not get with the same request from anywhere
// (docs/decisions.md, "CORS on the token endpoint").
func (s *Service) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Accept")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST, OPTIONS")
			writeJSON(w, http.StatusMethodNotAllowed, invalidRequest("Use GET or POST."))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenRequest)
		if err := r.ParseForm(); err != nil {
			writeJSON(w, http.StatusBadRequest, invalidRequest("Cannot parse the request."))
			return
		}
		resp, oerr := s.grant(r)
		s.countGrant(r.Form.Get("grant_type"), oerr)
		// One line per request, like a REST call's: never the secret, the
		// code or the tokens.
		attrs := []any{"grant_type", r.Form.Get("grant_type"), "client_id", r.Form.Get("client_id"), "remote", r.RemoteAddr}
		if oerr != nil {
			s.opt.Log.DebugContext(r.Context(), "oauth token request", append(attrs, "status", oerr.status, "error", oerr.Code, "description", oerr.Description)...)
			writeJSON(w, oerr.status, oerr)
			return
		}
		s.opt.Log.DebugContext(r.Context(), "oauth token request", append(attrs, "status", http.StatusOK)...)
		writeJSON(w, http.StatusOK, resp)
	})
}

func (s *Service) grant(r *http.Request) (any, *oauthError) {
	ctx := r.Context()
	grantType := r.Form.Get("grant_type")
	clientID, secret := r.Form.Get("client_id"), r.Form.Get("client_secret")
	if grantType == "" || clientID == "" || secret == "" {
		return nil, invalidRequest("grant_type, client_id and client_secret are required.")
	}
	app, err := s.st.App(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !app.SecretMatches(secret)) {
		return nil, invalidClient()
	}
	if err != nil {
		s.opt.Log.ErrorContext(ctx, "token request: registry lookup failed; check the data dir's disk (or Redis in a cluster)", "err", err)
		return nil, &oauthError{http.StatusInternalServerError, "server_error", "Internal error."}
	}
	now := s.opt.Now()
	switch grantType {
	case "authorization_code":
		code := r.Form.Get("code")
		if code == "" {
			return nil, invalidRequest("code is required.")
		}
		ac, err := s.st.UseAuthCode(ctx, code, app.ID, now)
		if err != nil {
			return nil, invalidGrant("The authorization code is invalid, used or expired.")
		}
		resp, err := s.Issue(ctx, app, ac.UserID)
		if err != nil {
			s.opt.Log.ErrorContext(ctx, "token request: cannot store the new token; check the data dir's disk (or Redis in a cluster)", "err", err)
			return nil, &oauthError{http.StatusInternalServerError, "server_error", "Internal error."}
		}
		return resp, nil
	case "refresh_token":
		refresh := r.Form.Get("refresh_token")
		if refresh == "" {
			return nil, invalidRequest("refresh_token is required.")
		}
		old, err := s.st.TokenByRefresh(ctx, refresh)
		if err != nil || old.AppID != app.ID || old.Revoked || !now.Before(old.RefreshExpires) {
			return nil, invalidGrant("The refresh token is invalid, used or expired.")
		}
		if _, err := s.activeUser(ctx, old.PortalID, old.UserID); err != nil {
			return nil, invalidGrant("The user is not active.")
		}
		// Rotation: the old pair stops working the moment the new one exists.
		next, err := s.st.RotateRefresh(ctx, refresh, s.newToken(app, old.UserID, now))
		if err != nil {
			return nil, invalidGrant("The refresh token is invalid, used or expired.")
		}
		resp, err := s.response(ctx, next)
		if err != nil {
			s.opt.Log.ErrorContext(ctx, "token request: cannot read the portal for the answer; check the data dir's disk (or Redis in a cluster)", "err", err)
			return nil, &oauthError{http.StatusInternalServerError, "server_error", "Internal error."}
		}
		return resp, nil
	}
	return nil, invalidRequest("Unsupported grant_type: want authorization_code or refresh_token.")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache") // RFC 6749 §5.1, for HTTP/1.0 caches
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
