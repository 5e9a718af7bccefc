package console

import (
	"embed"
	"io/fs"
	"net/http"
)

// web holds the page: plain HTML, CSS and JavaScript with no build step
// and nothing fetched from elsewhere, so the console works offline.
//
//go:embed web
var web embed.FS

// assets serves the embedded page with headers that keep it to itself:
// no framing, no foreign scripts or connections.
func (c *Console) assets() http.Handler {
	var files http.Handler
	if sub, err := fs.Sub(web, "web"); err == nil {
		files = http.StripPrefix(Prefix, http.FileServerFS(sub))
	} else {
		// Only a build without the embedded directory gets here.
		files = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "console assets missing from this build", http.StatusInternalServerError)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
