package realtime

import "net/http"

// writeText answers with a plain-text body and the CORS header every push
// server response carries.
func writeText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h["Access-Control-Allow-Origin"] = valueAnyOrigin
	h["Content-Type"] = valueTextPlain
	w.WriteHeader(status)
	if body != "" {
		_, _ = w.Write([]byte(body))
	}
}

// Header values every answer of a route shares. A long poll is a whole
// HTTP exchange per delivery, and Header.Set allocates a slice for each
// value; net/http only reads a response's values, so these are assigned
// as they are (keys in canonical form). Each has len == cap: an Add
// elsewhere copies instead of writing into it.
var (
	valueAnyOrigin = []string{"*"}
	valueTextPlain = []string{"text/plain"}
	valueJSON      = []string{"application/json"}
	valueOctets    = []string{"application/octet-stream"}
	valueExposeMid = []string{"Last-Message-Id"}
)

// contentTypeValue is the shared value of a format's Content-Type.
func contentTypeValue(ct string) []string {
	switch ct {
	case "text/plain":
		return valueTextPlain
	case "application/json":
		return valueJSON
	case "application/octet-stream":
		return valueOctets
	}
	return []string{ct}
}

// The request headers each route's preflight allows. The reference servers
// allow only the two conditional headers everywhere, which refuses a browser
// client that labels its body (Content-Type: application/octet-stream, say)
// and so needs a preflight; the routes read neither label nor conditionals,
// so allowing them changes nothing the route does (docs/decisions.md,
// "CORS preflights").
const (
	subAllowHeaders  = "If-Modified-Since, If-None-Match"
	postAllowHeaders = "Content-Type, If-Modified-Since, If-None-Match"
	pubAllowHeaders  = "Content-Type, Message-Expiry, If-Modified-Since, If-None-Match"
)

// serveOptions answers a CORS preflight with the methods the route serves
// and the request headers it takes, in the reference servers' answer shape
// (200, text/plain, empty body).
func serveOptions(w http.ResponseWriter, methods, headers string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", headers)
	writeText(w, http.StatusOK, "")
}

// acceptPost lets POST through to a POST-only route; it answers OPTIONS
// (CORS preflight) and refuses other methods itself.
func acceptPost(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodPost:
		return true
	case http.MethodOptions:
		serveOptions(w, "POST, OPTIONS", postAllowHeaders)
	default:
		methodNotAllowed(w, "POST, OPTIONS")
	}
	return false
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeText(w, http.StatusMethodNotAllowed, "Method not allowed.")
}

// writeError answers an HTTP request with a numbered error, as "CODE: Text".
func writeError(w http.ResponseWriter, e *protoError) {
	writeText(w, e.httpStatus(), e.Error())
}
