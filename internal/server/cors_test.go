package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/config"
)

// TestPreflightsOnDefaultPaths sends a browser's preflight to every public
// route under the default paths, aliases included, and checks that it
// allows the request.
func TestPreflightsOnDefaultPaths(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECRET"
	r := start(t, cfg)

	type want struct{ method, headers string }
	cases := map[string]want{"/oauth/token/": {http.MethodPost, "content-type"}}
	for _, p := range cfg.SubPaths {
		cases[p] = want{http.MethodGet, "if-modified-since,if-none-match"}
	}
	for _, p := range cfg.PubWebPaths {
		cases[p] = want{http.MethodPost, "content-type"}
	}
	for path, w := range cases {
		req, _ := http.NewRequest(http.MethodOptions, r.URL+path, nil)
		req.Header.Set("Origin", "http://app.example")
		req.Header.Set("Access-Control-Request-Method", w.method)
		req.Header.Set("Access-Control-Request-Headers", w.headers)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		ok := resp.StatusCode/100 == 2 && h.Get("Access-Control-Allow-Origin") == "*" &&
			listHas(h.Get("Access-Control-Allow-Methods"), w.method)
		for _, name := range strings.Split(w.headers, ",") {
			ok = ok && listHas(h.Get("Access-Control-Allow-Headers"), name)
		}
		if !ok {
			t.Errorf("OPTIONS %s for %s with %s: a browser refuses %d %v", path, w.method, w.headers, resp.StatusCode, h)
		}
	}
}

func listHas(list, want string) bool {
	for _, item := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(item), want) {
			return true
		}
	}
	return false
}
