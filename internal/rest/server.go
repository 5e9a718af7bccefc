// Package rest is a Bitrix24-compatible REST v2 framework: URL forms,
// parameter parsing (PHP-style keys), credential extraction, success and
// error envelopes, batch and server.time, as Bitrix's rest module
// (CRestServer, the bitrix:rest.server router) does them; docs/protocol.md,
// "REST API", sums them up. Methods are registered by other packages (for
// example pull); authentication is delegated to an Authenticator so this
// package knows nothing about OAuth or webhook storage.
package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Caller kinds.
const (
	KindOAuth   = "oauth"
	KindWebhook = "webhook"
)

// Caller is who is calling, as resolved by the Authenticator.
type Caller struct {
	PortalID int64
	UserID   int64
	AppID    int64
	Admin    bool
	Scopes   []string
	Kind     string // KindOAuth or KindWebhook
	ClientID string
	Domain   string
}

// HasScope reports whether the caller was granted scope.
func (c Caller) HasScope(scope string) bool { return slices.Contains(c.Scopes, scope) }

// Credential is what the request carried (docs/protocol.md, "REST API"). Both
// an access token and webhook path/parameters may be present; Bitrix consults
// its OAuth provider first, so an Authenticator should prefer AccessToken.
type Credential struct {
	// AccessToken comes from "Authorization: Bearer", else the "auth" or
	// "access_token" parameter (first that is a non-empty string).
	AccessToken string
	// WebhookUser is the numeric "aplogin" (path or parameter); 0 when
	// aplogin is not a number, in which case WebhookLogin holds it (Bitrix
	// also accepts a login there).
	WebhookUser   int64
	WebhookLogin  string
	WebhookSecret string
	// Present is true when a token or a complete webhook pair was found.
	// The server answers NO_AUTH_FOUND itself when it is false, so an
	// Authenticator only ever sees Present == true.
	Present bool
}

// Authenticator resolves a credential to a Caller. Failures that clients
// must see (expired_token, INVALID_CREDENTIALS, …) are returned as *Error,
// possibly wrapped; any other error is treated as an internal failure (500).
type Authenticator interface {
	Authenticate(ctx context.Context, c Credential) (Caller, error)
}

// Method is one REST method.
type Method struct {
	Name    string // e.g. "pull.application.config.get"; matched case-insensitively
	Scope   string // required scope; "" for none (Bitrix's "_global")
	Handler func(ctx context.Context, c Caller, p Params) (any, error)
}

// Options configure a Server. Zero values get defaults.
type Options struct {
	Now     func() time.Time // clock; default time.Now. Its location is the "server offset" of date_start.
	MaxBody int64            // maximum POST body in bytes; default DefaultMaxBody
	Log     *slog.Logger     // default: discard
}

// DefaultMaxBody matches the push side's 1 MiB payload limit (protocol.md).
const DefaultMaxBody = 1 << 20

// maxBatch is IRestService's batch limit (docs/decisions.md, "REST limits and
// hardening").
const maxBatch = 50

// Server dispatches REST calls to registered methods.
type Server struct {
	auth    Authenticator
	now     func() time.Time
	maxBody int64
	log     *slog.Logger

	mu      sync.RWMutex
	methods map[string]Method // keyed by lower-case name

	metrics callMetrics
	// bodies holds request-body buffers between requests (*[]byte): the
	// parameter decoders copy what they keep, so a body's buffer is free
	// once its parameters are read. A flood of 1 MiB bodies otherwise
	// allocates and zeroes a megabyte per request and makes the collector
	// run on every core that deliveries need.
	bodies sync.Pool
}

// New returns a Server with the built-in methods batch and server.time.
func New(auth Authenticator, opts Options) *Server {
	s := &Server{
		auth:    auth,
		now:     opts.Now,
		maxBody: opts.MaxBody,
		log:     opts.Log,
		methods: map[string]Method{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBody
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.Register(Method{Name: "batch", Handler: s.batch})
	s.Register(Method{Name: "server.time", Handler: s.serverTime})
	return s
}

// Register adds a method. Names are case-insensitive (the bitrix:rest.server
// router lower-cases first and retries as written, and every method of
// interest is registered in lower case). Registering a name twice, an empty
// name or a nil handler is a programming error and panics, like
// http.ServeMux.
func (s *Server) Register(m Method) {
	key := strings.ToLower(m.Name)
	if key == "" || m.Handler == nil {
		panic("rest: Register needs a name and a handler")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.methods[key]; dup {
		panic("rest: method registered twice: " + m.Name)
	}
	s.methods[key] = m
}

func (s *Server) lookup(name string) (Method, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.methods[strings.ToLower(name)]
	return m, ok
}

// Handler returns the REST handler. It accepts paths with or without the
// "/rest" prefix. Do NOT put it behind http.ServeMux for "/rest//method":
// the mux redirects unclean paths (golang/go#13639) and b24jssdk's OAuth
// client sends exactly such paths (docs/protocol.md, "REST API"). Use Mount
// instead.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Mount returns a handler that sends every path under /rest/ to the REST
// handler before next (typically a ServeMux) can clean or redirect it.
func (s *Server) Mount(next http.Handler) http.Handler {
	h := s.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/rest" || strings.HasPrefix(r.URL.Path, "/rest/") {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// route is the parsed request path.
type route struct {
	method  string
	aplogin string
	ap      string
	webhook bool
}

// parsePath understands /rest/{method}[/], /rest//{method} and
// /rest/{aplogin}/{ap}/{method}[/], and strips a ".json"/".xml" suffix
// (the bitrix:rest.server router). /rest/api/… (REST v3) is not served and
// yields ok=false.
func parsePath(p string) (route, bool) {
	if p == "/rest" || strings.HasPrefix(p, "/rest/") {
		p = p[len("/rest"):]
	}
	p = strings.TrimLeft(p, "/") // "/rest//method" is routed directly
	p = strings.TrimSuffix(p, "/")
	segs := strings.Split(p, "/")
	var rt route
	switch len(segs) {
	case 1:
		rt.method = segs[0]
	case 3:
		if strings.EqualFold(segs[0], "api") {
			return route{}, false
		}
		rt = route{aplogin: segs[0], ap: segs[1], method: segs[2], webhook: true}
		if rt.aplogin == "" || rt.ap == "" {
			return route{}, false
		}
	default:
		return route{}, false
	}
	// The transport suffix is the last dot-separated segment, compared after
	// the router's lower-casing. XML is accepted but answered with JSON
	// (Bitrix's REST docs allow either; no client uses XML).
	if i := strings.LastIndexByte(rt.method, '.'); i >= 0 {
		switch strings.ToLower(rt.method[i+1:]) {
		case "json", "xml":
			rt.method = rt.method[:i]
		}
	}
	if rt.method == "" {
		return route{}, false
	}
	return rt, true
}

// consumedKeys never reach a method: CRestServer and its auth providers take
// them for themselves.
var consumedKeys = [...]string{"auth", "access_token", "auth_connector", "aplogin", "ap", "sessid", "start", "state"}

type ctxKey int

const (
	ctxOrderedParams ctxKey = iota // *omap of the current top-level call, for batch ordering
	ctxInBatch                     // set for sub-calls of a batch
)

func setCommonHeaders(h http.Header) {
	// Always sent by Bitrix's rest module (CRestServer).
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Headers", "origin, content-type, accept")
	h.Set("X-Content-Type-Options", "nosniff")
	// Answers carry per-user secrets (config.get's signed channel ids and
	// connection token) and must not be kept by a browser or proxy cache;
	// PHP's default session cache limiter sends the same two headers.
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	setCommonHeaders(w.Header())
	if r.Method == http.MethodOptions {
		// CORS preflight: Bitrix's sources do not define an answer, so this
		// one allows what the REST clients send.
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "origin, content-type, accept, authorization")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ctx := r.Context()
	call := callLog{status: http.StatusOK}
	defer s.logCall(ctx, start, &call)
	defer s.countCall(time.Now(), &call)

	// As CRestServer orders its checks: the method must exist, before
	// authentication.
	rt, ok := parsePath(r.URL.Path)
	call.method, call.webhook = rt.method, rt.webhook
	var m Method
	if ok {
		m, ok = s.lookup(rt.method)
	}
	if !ok {
		s.writeError(ctx, w, &call, MethodNotFound(), "method", rt.method)
		return
	}
	call.method = m.Name

	tree, rerr := s.readParams(r)
	if rerr != nil {
		s.writeError(ctx, w, &call, rerr, "method", m.Name)
		return
	}
	if rt.webhook { // path variables are merged into the parameters
		tree.set("aplogin", rt.aplogin)
		tree.set("ap", rt.ap)
	}
	cred := extractCredential(r.Header.Get("Authorization"), tree)

	// Then, as CRestServer does, authentication and scope.
	caller, err := s.authenticate(ctx, cred)
	if err == nil {
		call.caller = &caller
		err = checkScope(m, caller)
	}
	if err != nil {
		s.writeError(ctx, w, &call, err, "method", m.Name)
		return
	}
	// Only a method sees the names, so a refused call does not pay for
	// folding the case of up to MaxJSONValues of them.
	for _, k := range consumedKeys {
		tree.del(k)
	}
	tree.foldCase()

	ctx = context.WithValue(ctx, ctxOrderedParams, tree)
	res, procStart, procEnd, err := s.invoke(ctx, m, caller, tree.params())
	if err != nil {
		s.writeError(ctx, w, &call, err, "method", m.Name, "user", caller.UserID)
		return
	}
	env := newEnvelope()
	env.set("result", nil)
	liftPaging(res, env, "next", "total")
	env.set("time", s.timing(start, s.now(), procEnd.Sub(procStart)))
	s.writeJSON(ctx, w, http.StatusOK, env)
}

func newEnvelope() *omap { return newOmap() }

// liftPaging stores res as env["result"], moving "next" and "total" of a
// map result to the top level as integers (CRestServer's processResponse;
// total moves even when null).
func liftPaging(res any, env *omap, nextKey, totalKey string) {
	m, ok := res.(map[string]any)
	if !ok {
		env.set("result", res)
		return
	}
	_, hasNext := m["next"]
	_, hasTotal := m["total"]
	if !hasNext && !hasTotal {
		env.set("result", res)
		return
	}
	rest := make(map[string]any, len(m))
	for k, v := range m {
		if k != "next" && k != "total" {
			rest[k] = v
		}
	}
	env.set("result", rest)
	if hasNext {
		n, _ := AsInt(m["next"])
		env.set(nextKey, n)
	}
	if hasTotal {
		if m["total"] == nil {
			env.set(totalKey, nil)
		} else {
			n, _ := AsInt(m["total"])
			env.set(totalKey, n)
		}
	}
}

// readParams builds the ordered parameter tree as CRestServer does
// (docs/protocol.md, "REST API"): the query string, then for POST the body
// replaces top-level keys. Only POST bodies are read (isPost()).
func (s *Server) readParams(r *http.Request) (*omap, *Error) {
	tree := newOmap()
	parsePHPForm(r.URL.RawQuery, tree)
	if r.Method != http.MethodPost || r.Body == nil {
		return tree, nil
	}
	body, err := s.readBody(r)
	defer s.releaseBody(body)
	if err != nil {
		return nil, NewError(http.StatusBadRequest, CodeInvalidRequest, "Could not read request body")
	}
	if int64(len(body)) > s.maxBody {
		return nil, RequestTooLarge()
	}
	ct := r.Header.Get("Content-Type")
	mt, mparams, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, _, _ = strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	switch {
	case mt == "application/json" || strings.Contains(mt, "+json"):
		// Invalid JSON, or JSON that is not an object/array, is silently
		// ignored and only the query remains, as in CRestServer.
		j, err := decodeOrderedJSON(body)
		switch {
		case errors.Is(err, errJSONTooMany):
			return nil, TooManyParameters()
		case err == nil:
			tree.takeTop(j)
		}
	case mt == "multipart/form-data":
		tree.takeTop(parseMultipart(body, mparams["boundary"]))
	default:
		// application/x-www-form-urlencoded, and any other type: the raw
		// body is parse_str'd whatever the Content-Type (BX24.js sends
		// text/plain).
		form := newOmap()
		parsePHPForm(string(body), form)
		tree.takeTop(form)
	}
	return tree, nil
}

// readBody reads at most maxBody+1 bytes of r's body into a buffer from
// s.bodies, which releaseBody returns once nothing refers to it. A declared
// length sizes the buffer once: growing it on the way would allocate twice
// the body in garbage, which for a 1 MiB body is most of what a refused
// request costs.
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if p, ok := s.bodies.Get().(*[]byte); ok {
		buf = *bytes.NewBuffer((*p)[:0])
	}
	if n := r.ContentLength; n > 0 && n <= s.maxBody {
		// bytes.MinRead spare: ReadFrom grows when less than that is free,
		// even when only EOF is left to read.
		buf.Grow(int(n) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(io.LimitReader(r.Body, s.maxBody+1))
	if err != nil {
		s.releaseBody(buf.Bytes())
		return nil, fmt.Errorf("read body: %w", err)
	}
	return buf.Bytes(), nil
}

// releaseBody gives body's buffer back to s.bodies. Small ones are not
// kept, as allocating them costs little; nor are any larger than a body
// may be (plus the allocator's rounding up to whole pages), so the pool
// holds nothing it would not need.
func (s *Server) releaseBody(body []byte) {
	if cap(body) < 64<<10 || int64(cap(body)) > s.maxBody+64<<10 {
		return
	}
	body = body[:0]
	s.bodies.Put(&body)
}

// parseMultipart reads the non-file fields of a multipart body with PHP key
// semantics. File parts are skipped: no pushpull method takes uploads, but
// they count towards MaxFormKeys, as each costs a header map to read.
// A malformed body yields the fields read so far, as PHP is lenient too.
func parseMultipart(body []byte, boundary string) *omap {
	form := newOmap()
	if boundary == "" {
		return form
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	n := 0
	for n < MaxFormKeys {
		part, err := mr.NextPart()
		if err != nil {
			break
		}
		n++
		name := part.FormName()
		if name == "" || part.FileName() != "" {
			continue
		}
		val, err := io.ReadAll(part)
		if err != nil {
			break
		}
		registerVar(form, name, string(val))
	}
	return form
}

// extractCredential applies Bitrix's order (docs/protocol.md, "REST API"):
// Bearer header first (prefix case-insensitive), then "auth", then
// "access_token" (case-sensitive keys, string values only); webhook from
// aplogin+ap.
func extractCredential(authz string, tree *omap) Credential {
	var c Credential
	if len(authz) > 7 && strings.EqualFold(authz[:7], "bearer ") {
		c.AccessToken = strings.TrimSpace(authz[7:])
	}
	if c.AccessToken == "" {
		for _, k := range []string{"auth", "access_token"} {
			if v, ok := tree.get(k); ok {
				if s, ok := v.(string); ok && s != "" {
					c.AccessToken = s
					break
				}
			}
		}
	}
	login, _ := tree.get("aplogin")
	secret, _ := tree.get("ap")
	ls, lok := scalarString(login)
	ss, sok := scalarString(secret)
	webhook := lok && sok && ls != "" && ss != ""
	if webhook {
		c.WebhookSecret = ss
		if id, err := strconv.ParseInt(ls, 10, 64); err == nil && id > 0 {
			c.WebhookUser = id
		} else {
			c.WebhookLogin = ls
		}
	}
	c.Present = c.AccessToken != "" || webhook
	return c
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	}
	return "", false
}

func (s *Server) authenticate(ctx context.Context, cred Credential) (Caller, error) {
	if !cred.Present {
		return Caller{}, NoAuthFound()
	}
	c, err := s.auth.Authenticate(ctx, cred)
	if err != nil {
		return Caller{}, fmt.Errorf("authenticate: %w", err)
	}
	return c, nil
}

func checkScope(m Method, c Caller) error {
	if m.Scope != "" && !c.HasScope(m.Scope) {
		return InsufficientScope(c.Kind)
	}
	return nil
}

// invoke runs a handler, turning a panic into an error so one bad call
// cannot take the server down, and measures the handler's own time
// ("processing" of the "time" object, docs/protocol.md, "REST API").
func (s *Server) invoke(ctx context.Context, m Method, c Caller, p Params) (res any, procStart, procEnd time.Time, err error) {
	procStart = s.now()
	defer func() {
		procEnd = s.now()
		if v := recover(); v != nil {
			s.log.ErrorContext(ctx, "rest: handler panic", "method", m.Name, "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("rest: method %s panicked: %v", m.Name, v)
		}
	}()
	res, err = m.Handler(ctx, c, p)
	if err != nil {
		err = fmt.Errorf("method %s: %w", m.Name, err)
	}
	return res, procStart, procEnd, err
}

// toRESTError maps any error to the envelope to send. Non-REST errors are
// internal failures: logged in full, answered with a generic 500.
func (s *Server) toRESTError(ctx context.Context, err error, logAttrs ...any) *Error {
	var re *Error
	if errors.As(err, &re) {
		return re
	}
	s.log.ErrorContext(ctx, "rest: internal error", append(logAttrs, "err", err)...)
	return InternalError()
}

func errorBody(e *Error) *omap {
	o := newOmap()
	for k, v := range e.Extra {
		if k != "error" && k != "error_description" {
			o.set(k, v)
		}
	}
	body := newOmap()
	body.set("error", e.Code)
	body.set("error_description", e.Description)
	body.replaceTop(o)
	return body
}

// writeError sends the error envelope (docs/protocol.md, "REST API"): no
// "time". The call's log line gets the error's code.
func (s *Server) writeError(ctx context.Context, w http.ResponseWriter, call *callLog, err error, logAttrs ...any) {
	re := s.toRESTError(ctx, err, logAttrs...)
	call.status, call.code = re.Status, re.Code
	s.writeJSON(ctx, w, re.Status, errorBody(re))
}

// callLog is what the one log line of a REST call says.
type callLog struct {
	method  string
	webhook bool    // the webhook URL form, /rest/USER/SECRET/method
	caller  *Caller // nil until authenticated
	status  int
	code    string // the error code, "" on success
}

// maxLoggedMethod bounds the method name logged for an unknown method:
// the path is the client's to choose.
const maxLoggedMethod = 100

// logCall writes the one debug line every REST call gets: the method, who
// called and how it ended. Credentials (tokens, webhook secrets) and
// parameters are never logged: the first are secrets, the second may be
// personal data.
func (s *Server) logCall(ctx context.Context, start time.Time, call *callLog) {
	if !s.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	method := call.method
	if len(method) > maxLoggedMethod {
		method = method[:maxLoggedMethod] + "…"
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.Int("status", call.status),
		slog.Duration("duration", s.now().Sub(start)),
	}
	if call.code != "" {
		attrs = append(attrs, slog.String("error", call.code))
	}
	if c := call.caller; c != nil {
		attrs = append(attrs, slog.String("auth", c.Kind), slog.Int64("user", c.UserID))
		if c.ClientID != "" {
			attrs = append(attrs, slog.String("client_id", c.ClientID))
		}
	} else if call.webhook {
		attrs = append(attrs, slog.String("auth", KindWebhook))
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "rest call", attrs...)
}

func (s *Server) writeJSON(ctx context.Context, w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		// A handler returned something JSON cannot encode (Bitrix:
		// WRONG_ENCODING). The status is not yet sent, so answer 500.
		s.log.ErrorContext(ctx, "rest: encode response", "err", err)
		status = http.StatusInternalServerError
		data, _ = json.Marshal(errorBody(InternalError()))
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if _, err := w.Write(data); err != nil {
		s.log.DebugContext(ctx, "rest: write response", "err", err)
	}
}

// Timing is the "time" object (docs/protocol.md, "REST API"). Operating and
// OperatingResetAt are only present when an operating-time limiter is active;
// pushpull has none, so they are omitted (b24jssdk tolerates their absence).
type Timing struct {
	Start            float64  `json:"start"`
	Finish           float64  `json:"finish"`
	Duration         float64  `json:"duration"`
	Processing       float64  `json:"processing"`
	DateStart        string   `json:"date_start"`
	DateFinish       string   `json:"date_finish"`
	OperatingResetAt *int64   `json:"operating_reset_at,omitempty"`
	Operating        *float64 `json:"operating,omitempty"`
}

// PHPDateLayout is PHP's date('c') as a time layout: ISO-8601 with a
// numeric offset, "+00:00" rather than RFC 3339's "Z". Bitrix's answers
// carry their dates in it, so every package that imitates them uses this.
const PHPDateLayout = "2006-01-02T15:04:05-07:00"

// microseconds rounds like microtime(): PHP has microsecond resolution, and
// rounding keeps Go from printing tiny durations in exponent form.
func microseconds(d float64) float64 {
	return float64(int64(d*1e6+0.5)) / 1e6
}

func unixFloat(t time.Time) float64 {
	return float64(t.UnixMicro()) / 1e6
}

func (s *Server) timing(start, finish time.Time, processing time.Duration) Timing {
	return Timing{
		Start:      unixFloat(start),
		Finish:     unixFloat(finish),
		Duration:   microseconds(finish.Sub(start).Seconds()),
		Processing: microseconds(processing.Seconds()),
		DateStart:  start.Format(PHPDateLayout),
		DateFinish: finish.Format(PHPDateLayout),
	}
}

// serverTime is the built-in server.time: date('c') of the server.
func (s *Server) serverTime(context.Context, Caller, Params) (any, error) {
	return s.now().Format(PHPDateLayout), nil
}
