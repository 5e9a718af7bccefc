package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The browser side of the operator credential. Logging in trades the token
// for a session cookie (HttpOnly, SameSite=Strict, path /console/) that
// names no secret: it is an expiry signed with a key this process draws at
// start, so a restart logs everyone out and nothing needs storing. Each
// mutating request from the page also carries csrfHeader, a value derived
// from the cookie that only a same-origin page can read (GET
// /console/api/session); a custom header cannot be sent cross-site without
// a CORS preflight, which the console never grants. Scripts may send the
// token itself as "Authorization: Bearer".
const (
	cookieName = "pushpull_console"
	csrfHeader = "X-Console-CSRF"
	sessionTTL = 12 * time.Hour
)

type guard struct {
	token []byte // empty: read-only
	key   [32]byte
	now   func() time.Time
}

func newGuard(token string, now func() time.Time) *guard {
	g := &guard{token: []byte(token), now: now}
	// crypto/rand.Read never fails (it panics inside the runtime on a
	// broken system source).
	_, _ = rand.Read(g.key[:])
	return g
}

func (g *guard) readOnly() bool { return len(g.token) == 0 }

func (g *guard) mac(kind, v string) string {
	m := hmac.New(sha256.New, g.key[:])
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(v))
	return hex.EncodeToString(m.Sum(nil))
}

// newSession returns a cookie value valid until exp.
func (g *guard) newSession(exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	return e + "." + g.mac("session", e)
}

// session returns the request's valid session cookie value, or "".
func (g *guard) session(r *http.Request) string {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	e, sig, ok := strings.Cut(ck.Value, ".")
	if !ok {
		return ""
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || !g.now().Before(time.Unix(exp, 0)) {
		return ""
	}
	if !hmac.Equal([]byte(sig), []byte(g.mac("session", e))) {
		return ""
	}
	return ck.Value
}

func (g *guard) csrf(session string) string { return g.mac("csrf", session) }

func (g *guard) tokenMatches(t string) bool {
	return len(g.token) > 0 && subtle.ConstantTimeCompare([]byte(t), g.token) == 1
}

// sameOrigin refuses what a browser marks as coming from another site:
// Sec-Fetch-Site other than same-origin (or none, typed by the user), or
// an Origin whose host is not the one asked. Clients that send neither
// (curl, scripts) are not browsers and pass to the credential check.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

// hostAllowed is the console's defence against DNS rebinding: a hostile
// page can rebind its own name to the console's address and then read the
// console as same-origin, but its requests still carry its own name in
// Host. So the console answers only to IP addresses, localhost and the
// names the operator listed; none of those can be a stranger's name.
func hostAllowed(hostport string, names []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, n := range names {
		if strings.EqualFold(strings.TrimSuffix(n, "."), host) {
			return true
		}
	}
	return false
}

// Errors of the mutating routes, in the REST side's error shape.
var (
	errUnknownHost = apiError{http.StatusMisdirectedRequest, "UNKNOWN_HOST", "the console answers only to IP addresses, localhost and the names in --console-hosts"}
	errReadOnly    = apiError{http.StatusForbidden, "READ_ONLY", "the console is read-only: start pushpull with --console-token to enable actions"}
	errCrossSite   = apiError{http.StatusForbidden, "CROSS_SITE", "cross-site requests are refused"}
	errNoAuth      = apiError{http.StatusForbidden, "OPERATOR_REQUIRED", "this action needs the operator credential: log in with the console token"}
)

// mutating lets a request through only from the operator on this origin.
func (g *guard) mutating(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.authorize(r); err != nil {
			err.write(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (g *guard) authorize(r *http.Request) *apiError {
	if g.readOnly() {
		return &errReadOnly
	}
	if !sameOrigin(r) {
		return &errCrossSite
	}
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if g.tokenMatches(bearer) {
			return nil
		}
		return &errNoAuth
	}
	s := g.session(r)
	if s == "" {
		return &errNoAuth
	}
	if !hmac.Equal([]byte(r.Header.Get(csrfHeader)), []byte(g.csrf(s))) {
		return &errCrossSite
	}
	return nil
}

type sessionInfo struct {
	ReadOnly bool   `json:"readOnly"`
	LoggedIn bool   `json:"loggedIn"`
	CSRF     string `json:"csrf,omitempty"`
}

// serveSession tells the page whether it may act, and the value its
// mutating requests carry. Other origins cannot read it: no CORS.
func (c *Console) serveSession(w http.ResponseWriter, r *http.Request) {
	info := sessionInfo{ReadOnly: c.guard.readOnly()}
	if s := c.guard.session(r); s != "" && !info.ReadOnly {
		info.LoggedIn, info.CSRF = true, c.guard.csrf(s)
	}
	writeJSON(w, http.StatusOK, info)
}

// maxBody bounds what the console reads of a request body.
const maxBody = 1 << 20

func (c *Console) serveLogin(w http.ResponseWriter, r *http.Request) {
	if c.guard.readOnly() {
		errReadOnly.write(w)
		return
	}
	if !sameOrigin(r) {
		errCrossSite.write(w)
		return
	}
	var in struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(r, &in); err != nil {
		badRequest(w, err.Error())
		return
	}
	if !c.guard.tokenMatches(in.Token) {
		writeError(w, http.StatusForbidden, "WRONG_TOKEN", "that is not the console token")
		return
	}
	exp := c.opt.Now().Add(sessionTTL)
	s := c.guard.newSession(exp)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s, Path: Prefix, Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	c.opt.Log.Info("console: operator logged in", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, sessionInfo{LoggedIn: true, CSRF: c.guard.csrf(s)})
}

func (c *Console) serveLogout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		errCrossSite.write(w)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, sessionInfo{ReadOnly: c.guard.readOnly()})
}

// apiError is an answer in the REST side's error shape:
// {"error": CODE, "error_description": text}.
type apiError struct {
	status int
	code   string
	text   string
}

func (e apiError) write(w http.ResponseWriter) { writeError(w, e.status, e.code, e.text) }

func writeError(w http.ResponseWriter, status int, code, text string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": text})
}

func badRequest(w http.ResponseWriter, text string) {
	writeError(w, http.StatusBadRequest, "INVALID_REQUEST", text)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// decodeJSON reads one JSON object from the body, refusing unknown fields
// so that a misspelt option is an error rather than a default.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("the body must be a JSON object of the documented fields: " + err.Error())
	}
	return nil
}
