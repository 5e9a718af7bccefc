package auth

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/testkit"
)

// TestCrossOriginRefresh refreshes as b24jssdk's B24OAuth does from a page
// on another origin: a preflight (sent when the page labels its request
// with a header beyond the CORS-safelisted ones), then the form POST. The
// page must be able to read the new pair, and a refused refresh's error.
func TestCrossOriginRefresh(t *testing.T) {
	f := newFixture(t)
	tok, err := f.svc.Issue(t.Context(), f.app, f.user)
	if err != nil {
		t.Fatal(err)
	}
	const origin = "http://app.example"
	u := f.srv.URL + "/oauth/token/"

	req, _ := http.NewRequest(http.MethodOptions, u, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode/100 != 2 || h.Get("Access-Control-Allow-Origin") != "*" ||
		!hasToken(h.Get("Access-Control-Allow-Methods"), "POST") || !hasToken(h.Get("Access-Control-Allow-Methods"), "GET") ||
		!hasToken(h.Get("Access-Control-Allow-Headers"), "content-type") {
		t.Fatalf("preflight: a browser refuses %d %v", resp.StatusCode, h)
	}
	// Credentials travel in the body: the answer must not invite cookies.
	if h.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("preflight allows credentials: %v", h)
	}

	refresh := func(rt string) (int, http.Header, map[string]any) {
		t.Helper()
		form := url.Values{"grant_type": {"refresh_token"}, "client_id": {f.app.ClientID},
			"client_secret": {f.app.ClientSecret}, "refresh_token": {rt}}
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
		req.Header.Set("Origin", origin)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json, text/plain, */*")
		return testkit.JSON(t)(http.DefaultClient.Do(req))
	}
	status, h, next := refresh(tok.RefreshToken)
	if status != http.StatusOK || next["refresh_token"] == tok.RefreshToken || next["access_token"] == "" {
		t.Fatalf("cross-origin refresh: %d %v", status, next)
	}
	if h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("the page cannot read its new pair (the old one is already spent): %v", h)
	}
	// The page goes on with the pair it read.
	if status, h, again := refresh(next["refresh_token"].(string)); status != http.StatusOK || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("second cross-origin refresh: %d %v %v", status, h, again)
	}
	// A refused refresh is readable too, so the page learns why.
	if status, h, body := refresh(tok.RefreshToken); status != http.StatusBadRequest || body["error"] != "invalid_grant" ||
		h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("spent refresh token: %d %v %v", status, h, body)
	}
}

func hasToken(list, want string) bool {
	for _, item := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(item), want) {
			return true
		}
	}
	return false
}
