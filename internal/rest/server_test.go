package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeAuth knows one OAuth token per scope set and one webhook.
type fakeAuth struct{}

func (fakeAuth) Authenticate(_ context.Context, c Credential) (Caller, error) {
	switch c.AccessToken {
	case "good":
		return Caller{UserID: 1, AppID: 7, Scopes: []string{"pull"}, Kind: KindOAuth, ClientID: "local.x"}, nil
	case "noscope":
		return Caller{UserID: 1, Scopes: []string{"user"}, Kind: KindOAuth}, nil
	case "expired":
		return Caller{}, ExpiredToken()
	case "boom":
		return Caller{}, errors.New("database is on fire")
	case "":
	default:
		return Caller{}, InvalidToken()
	}
	if c.WebhookUser == 5 && c.WebhookSecret == "s3cret" {
		return Caller{UserID: 5, Scopes: []string{"pull"}, Kind: KindWebhook}, nil
	}
	if c.WebhookUser == 6 && c.WebhookSecret == "s3cret" {
		return Caller{UserID: 6, Scopes: nil, Kind: KindWebhook}, nil
	}
	return Caller{}, InvalidCredentials()
}

var fixedNow = time.Date(2026, 3, 31, 17, 5, 18, 123456000, time.FixedZone("", 2*3600))

type recorded struct {
	caller Caller
	params Params
}

func newTestServer(t *testing.T) (*Server, *recorded) {
	t.Helper()
	s := New(fakeAuth{}, Options{Now: func() time.Time { return fixedNow }, MaxBody: 4096})
	rec := &recorded{}
	s.Register(Method{Name: "pull.echo", Scope: "pull", Handler: func(_ context.Context, c Caller, p Params) (any, error) {
		rec.caller, rec.params = c, p
		return map[string]any{"params": p}, nil
	}})
	s.Register(Method{Name: "pull.fail", Scope: "pull", Handler: func(context.Context, Caller, Params) (any, error) {
		return nil, WrongAuthType("Access for this method allowed only by application authorization.")
	}})
	s.Register(Method{Name: "pull.internal", Scope: "pull", Handler: func(context.Context, Caller, Params) (any, error) {
		return nil, errors.New("secret internal detail")
	}})
	s.Register(Method{Name: "pull.panic", Handler: func(context.Context, Caller, Params) (any, error) {
		panic("oops")
	}})
	s.Register(Method{Name: "list.items", Handler: func(context.Context, Caller, Params) (any, error) {
		return map[string]any{"items": []any{1}, "next": 50, "total": "120"}, nil
	}})
	return s, rec
}

func do(t *testing.T, s *Server, method, target, ctype, body string, hdr ...string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	var r *http.Request
	if body != "" || method == http.MethodPost {
		r = httptest.NewRequest(method, "http://x"+target, strings.NewReader(body))
	} else {
		r = httptest.NewRequest(method, "http://x"+target, nil)
	}
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	var out map[string]any
	if w.Body.Len() > 0 {
		dec := json.NewDecoder(bytes.NewReader(w.Body.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&out); err != nil {
			t.Fatalf("%s %s: body not JSON: %v: %q", method, target, err, w.Body.String())
		}
	}
	return w, out
}

func TestURLForms(t *testing.T) {
	s, rec := newTestServer(t)
	for _, target := range []string{
		"/rest/pull.echo?auth=good",
		"/rest/pull.echo/?auth=good",
		"/rest/pull.echo.json?auth=good",
		"/rest/pull.echo.xml?auth=good",
		"/rest//pull.echo?auth=good",
		"/rest//pull.echo.json?auth=good",
		"/rest/PULL.Echo.JSON?auth=good",
		"/rest/5/s3cret/pull.echo",
		"/rest/5/s3cret/pull.echo.json",
		"/rest/5/s3cret/pull.echo/",
		"/pull.echo?auth=good", // mounted behind StripPrefix
		"/rest/pull.echo?aplogin=5&ap=s3cret",
	} {
		w, out := do(t, s, http.MethodGet, target, "", "")
		if w.Code != 200 {
			t.Errorf("%s: status %d body %s", target, w.Code, w.Body)
			continue
		}
		if _, ok := out["result"]; !ok {
			t.Errorf("%s: no result: %v", target, out)
		}
		if p := rec.params; p.Has("auth") || p.Has("aplogin") || p.Has("ap") {
			t.Errorf("%s: consumed keys reached the method: %v", target, p)
		}
	}
	if rec.caller.Kind != KindWebhook || rec.caller.UserID != 5 {
		t.Errorf("webhook caller = %+v", rec.caller)
	}
}

func TestMountBypassesServeMuxRedirect(t *testing.T) {
	s, _ := newTestServer(t)
	mux := http.NewServeMux()
	mux.Handle("/rest/", s.Handler())
	h := s.Mount(mux)
	r := httptest.NewRequest(http.MethodPost, "http://x/rest//pull.echo?bx24_sdk_ver=1", strings.NewReader(`{"auth":"good"}`))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
}

func TestUnknownMethodBeforeAuth(t *testing.T) {
	s, _ := newTestServer(t)
	for _, target := range []string{"/rest/no.such", "/rest/no.such?auth=bad", "/rest/", "/rest/a/b", "/rest/api/1/x/pull.echo", "/rest/1//pull.echo"} {
		w, out := do(t, s, http.MethodGet, target, "", "")
		if w.Code != 404 || out["error"] != "ERROR_METHOD_NOT_FOUND" || out["error_description"] != "Method not found!" {
			t.Errorf("%s: %d %v", target, w.Code, out)
		}
		if _, ok := out["time"]; ok {
			t.Errorf("%s: error carries time", target)
		}
	}
}

func TestErrors(t *testing.T) {
	s, _ := newTestServer(t)
	cases := []struct {
		target string
		hdr    []string
		status int
		code   string
		desc   string
	}{
		{"/rest/pull.echo", nil, 401, "NO_AUTH_FOUND", "Wrong authorization data"},
		{"/rest/pull.echo?auth=expired", nil, 401, "expired_token", "The access token provided has expired"},
		{"/rest/pull.echo?auth=nope", nil, 401, "invalid_token", "The access token provided is invalid"},
		{"/rest/pull.echo?auth=noscope", nil, 403, "insufficient_scope", "The request requires higher privileges than provided by the access token"},
		{"/rest/6/s3cret/pull.echo", nil, 403, "insufficient_scope", "The request requires higher privileges than provided by the webhook token"},
		{"/rest/5/wrong/pull.echo", nil, 403, "INVALID_CREDENTIALS", "Invalid request credentials"},
		{"/rest/pull.echo?aplogin=5", nil, 401, "NO_AUTH_FOUND", "Wrong authorization data"},
		{"/rest/pull.fail?auth=good", nil, 403, "WRONG_AUTH_TYPE", "Access for this method allowed only by application authorization."},
		{"/rest/pull.internal?auth=good", nil, 500, "INTERNAL_SERVER_ERROR", "Internal server error"},
		{"/rest/pull.panic?auth=good", nil, 500, "INTERNAL_SERVER_ERROR", "Internal server error"},
		{"/rest/pull.echo?auth=boom", nil, 500, "INTERNAL_SERVER_ERROR", "Internal server error"},
		{"/rest/pull.echo", []string{"Authorization", "Bearer expired"}, 401, "expired_token", "The access token provided has expired"},
		// "auth" keys are case-sensitive: AUTH is not a credential.
		{"/rest/pull.echo?AUTH=good", nil, 401, "NO_AUTH_FOUND", "Wrong authorization data"},
	}
	for _, c := range cases {
		w, out := do(t, s, http.MethodGet, c.target, "", "", c.hdr...)
		if w.Code != c.status || out["error"] != c.code || out["error_description"] != c.desc {
			t.Errorf("%s: got %d %v; want %d %s %q", c.target, w.Code, out, c.status, c.code, c.desc)
		}
		if len(out) != 2 {
			t.Errorf("%s: envelope has extra keys: %v", c.target, out)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("%s: content type %q", c.target, ct)
		}
		if strings.Contains(w.Body.String(), "secret internal") || strings.Contains(w.Body.String(), "fire") {
			t.Errorf("%s: internal detail leaked", c.target)
		}
	}
}

func TestErrorExtraAndIs(t *testing.T) {
	e := ArgumentError("USER_ID", "bad")
	b, err := json.Marshal(errorBody(e))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"error":"ERROR_ARGUMENT","error_description":"bad","argument":"USER_ID"}` {
		t.Errorf("got %s", b)
	}
	wrapped := errors.Join(errors.New("ctx"), ExpiredToken())
	if !errors.Is(wrapped, ExpiredToken()) || errors.Is(wrapped, InvalidToken()) {
		t.Error("errors.Is by code failed")
	}
	if NewError(0, "X", "y").Status != 400 {
		t.Error("default status not 400")
	}
}

func TestBearerVersusParam(t *testing.T) {
	s, rec := newTestServer(t)
	// Bearer is checked first (docs/protocol.md, "REST API"): a bad auth
	// param does not matter.
	w, _ := do(t, s, http.MethodGet, "/rest/pull.echo?auth=nope", "", "", "Authorization", "bEaReR good")
	if w.Code != 200 {
		t.Fatalf("bearer: %d %s", w.Code, w.Body)
	}
	// access_token is the fallback; an array-valued auth is skipped.
	w, _ = do(t, s, http.MethodGet, "/rest/pull.echo?auth[]=x&access_token=good", "", "")
	if w.Code != 200 {
		t.Fatalf("access_token: %d %s", w.Code, w.Body)
	}
	if rec.params.Has("access_token") || rec.params.Has("auth") {
		t.Errorf("credential keys reached method: %v", rec.params)
	}
	// auth in POST body.
	w, _ = do(t, s, http.MethodPost, "/rest/pull.echo", "application/x-www-form-urlencoded", "auth=good")
	if w.Code != 200 {
		t.Fatalf("body auth: %d %s", w.Code, w.Body)
	}
}

func TestBodyEncodings(t *testing.T) {
	s, rec := newTestServer(t)
	want := Params{
		"PARAMS":  map[string]any{"a": map[string]any{"b": "x y"}, "k": "v w&"},
		"USER_ID": []any{"1", "2"},
		"COMMAND": "cmd",
	}
	form := "auth=good&PARAMS[a][b]=x+y&PARAMS%5Bk%5D=v%20w%26&USER_ID[]=1&USER_ID[]=2&COMMAND=cmd"
	mp := &bytes.Buffer{}
	mw := multipart.NewWriter(mp)
	for _, kv := range [][2]string{{"auth", "good"}, {"PARAMS[a][b]", "x y"}, {"PARAMS[k]", "v w&"}, {"USER_ID[0]", "1"}, {"USER_ID[1]", "2"}, {"COMMAND", "cmd"}} {
		if err := mw.WriteField(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	fw, _ := mw.CreateFormFile("file", "a.txt")
	_, _ = fw.Write([]byte("ignored"))
	_ = mw.Close()

	cases := []struct{ name, target, ctype, body string }{
		{"query", "/rest/pull.echo?" + form, "", ""},
		{"urlencoded", "/rest/pull.echo", "application/x-www-form-urlencoded", form},
		{"text/plain", "/rest/pull.echo.json", "text/plain;charset=UTF-8", form},
		{"no content type", "/rest/pull.echo.json", "", form},
		{"multipart", "/rest/pull.echo", mw.FormDataContentType(), mp.String()},
		{"json", "/rest/pull.echo", "application/json", `{"auth":"good","PARAMS":{"a":{"b":"x y"},"k":"v w&"},"USER_ID":["1","2"],"COMMAND":"cmd"}`},
		{"json+suffix", "/rest/pull.echo", "application/vnd.api+json; charset=utf-8", `{"auth":"good","PARAMS":{"a":{"b":"x y"},"k":"v w&"},"USER_ID":["1","2"],"COMMAND":"cmd"}`},
	}
	for _, c := range cases {
		method := http.MethodPost
		if c.body == "" {
			method = http.MethodGet
		}
		w, _ := do(t, s, method, c.target, c.ctype, c.body)
		if w.Code != 200 {
			t.Errorf("%s: %d %s", c.name, w.Code, w.Body)
			continue
		}
		if !reflect.DeepEqual(rec.params, want) {
			t.Errorf("%s: params %#v\nwant %#v", c.name, rec.params, want)
		}
	}
}

func TestMergeOrderAndTypes(t *testing.T) {
	s, rec := newTestServer(t)
	// Body wins over query on equal top-level keys; JSON keeps types.
	w, _ := do(t, s, http.MethodPost, "/rest/pull.echo?auth=good&A=q&B=q", "application/json", `{"A":5,"C":true,"D":null}`)
	if w.Code != 200 {
		t.Fatal(w.Body)
	}
	if rec.params["A"] != json.Number("5") || rec.params["B"] != "q" || rec.params["C"] != true || rec.params["D"] != nil {
		t.Errorf("params %#v", rec.params)
	}
	if n, ok := rec.params.Int("a"); !ok || n != 5 {
		t.Errorf("Int(a) = %d %v", n, ok)
	}
	// Invalid JSON is ignored silently: only the query remains.
	w, _ = do(t, s, http.MethodPost, "/rest/pull.echo?auth=good&A=q", "application/json", `{"A":`)
	if w.Code != 200 || rec.params["A"] != "q" {
		t.Errorf("invalid json: %d %#v", w.Code, rec.params)
	}
	// The body is read only for POST.
	w, _ = do(t, s, http.MethodPut, "/rest/pull.echo?auth=good", "application/x-www-form-urlencoded", "A=body")
	if w.Code != 200 || rec.params.Has("A") {
		t.Errorf("PUT body was read: %#v", rec.params)
	}
	// Top-level keys are case-insensitive; the last spelling wins.
	w, _ = do(t, s, http.MethodGet, "/rest/pull.echo?auth=good&cache=Y&CACHE=N&bx24_sdk_ver=1", "", "")
	if v, _ := rec.params.String("Cache"); w.Code != 200 || v != "N" || len(rec.params) != 2 {
		t.Errorf("case fold: %#v", rec.params)
	}
}

func TestSuccessEnvelope(t *testing.T) {
	s, _ := newTestServer(t)
	w, out := do(t, s, http.MethodGet, "/rest/server.time?auth=good", "", "")
	if w.Code != 200 || out["result"] != "2026-03-31T17:05:18+02:00" {
		t.Fatalf("%d %v", w.Code, out)
	}
	for h, v := range map[string]string{
		"Access-Control-Allow-Origin": "*", "X-Content-Type-Options": "nosniff",
		"Content-Type": "application/json; charset=utf-8",
		// config.get answers carry the connection token: never cached.
		"Cache-Control": "no-store", "Pragma": "no-cache",
	} {
		if got := w.Header().Get(h); got != v {
			t.Errorf("header %s = %q", h, got)
		}
	}
	tm, ok := out["time"].(map[string]any)
	if !ok {
		t.Fatalf("time missing: %v", out)
	}
	for _, k := range []string{"start", "finish", "duration", "processing"} {
		if _, ok := tm[k].(json.Number); !ok {
			t.Errorf("time.%s not a number: %#v", k, tm[k])
		}
	}
	if tm["start"] != json.Number("1774969518.123456") {
		t.Errorf("start = %v", tm["start"])
	}
	if tm["date_start"] != "2026-03-31T17:05:18+02:00" || tm["date_finish"] != "2026-03-31T17:05:18+02:00" {
		t.Errorf("dates = %v %v", tm["date_start"], tm["date_finish"])
	}
	// The envelope key order is result, then time (time appended last).
	if !strings.HasPrefix(w.Body.String(), `{"result":`) {
		t.Errorf("body %s", w.Body)
	}
	// next/total move to the top level as integers.
	w, out = do(t, s, http.MethodGet, "/rest/list.items?auth=good", "", "")
	if out["next"] != json.Number("50") || out["total"] != json.Number("120") {
		t.Errorf("paging: %s", w.Body)
	}
	if r := out["result"].(map[string]any); r["next"] != nil || r["items"] == nil {
		t.Errorf("paging result: %s", w.Body)
	}
}

func TestOptionsPreflight(t *testing.T) {
	s, _ := newTestServer(t)
	w, _ := do(t, s, http.MethodOptions, "/rest/anything", "", "")
	if w.Code != http.StatusNoContent || !strings.Contains(w.Header().Get("Access-Control-Allow-Headers"), "authorization") {
		t.Errorf("%d %v", w.Code, w.Header())
	}
}

func TestOversizeBody(t *testing.T) {
	s, _ := newTestServer(t)
	w, out := do(t, s, http.MethodPost, "/rest/pull.echo?auth=good", "text/plain", "A="+strings.Repeat("x", 5000))
	if w.Code != 413 || out["error"] != CodeRequestTooLarge || out["error_description"] != "Request body is too large" {
		t.Errorf("%d %v", w.Code, out)
	}
	// Exactly at the limit is fine.
	w, _ = do(t, s, http.MethodPost, "/rest/pull.echo?auth=good", "text/plain", "A="+strings.Repeat("x", 4094))
	if w.Code != 200 {
		t.Errorf("at limit: %d", w.Code)
	}
}

func TestBatch(t *testing.T) {
	s, _ := newTestServer(t)
	type batchOut struct {
		Result struct {
			Result      json.RawMessage `json:"result"`
			ResultError json.RawMessage `json:"result_error"`
			ResultTotal json.RawMessage `json:"result_total"`
			ResultNext  json.RawMessage `json:"result_next"`
			ResultTime  json.RawMessage `json:"result_time"`
		} `json:"result"`
		Time map[string]any `json:"time"`
	}
	run := func(ctype, body string) batchOut {
		t.Helper()
		w, _ := do(t, s, http.MethodPost, "/rest/batch?auth=good", ctype, body)
		if w.Code != 200 {
			t.Fatalf("batch status %d: %s", w.Code, w.Body)
		}
		var o batchOut
		if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
			t.Fatal(err)
		}
		if o.Time == nil {
			t.Fatalf("batch without time: %s", w.Body)
		}
		return o
	}

	// Map cmd over JSON, halt off: all items run, errors collected, order kept.
	o := run("application/json", `{"halt":0,"cmd":{
		"z":"pull.echo?USER_ID%5B0%5D=1&PARAMS%5Bk%5D=v%20w%26",
		"a":"no.such.method",
		"m":"batch?cmd[x]=server.time",
		"l":"list.items",
		"skip":{"not":"a string"},
		"t":"SERVER.TIME"}}`)
	if got := string(o.Result.Result); got != `{"z":{"params":{"PARAMS":{"k":"v w\u0026"},"USER_ID":["1"]}},"l":{"items":[1]},"t":"2026-03-31T17:05:18+02:00"}` {
		t.Errorf("result = %s", got)
	}
	if got := string(o.Result.ResultError); got != `{"a":{"error":"ERROR_METHOD_NOT_FOUND","error_description":"Method not found!"},"m":{"error":"ERROR_BATCH_METHOD_NOT_ALLOWED","error_description":"Method is not allowed for batch usage"}}` {
		t.Errorf("result_error = %s", got)
	}
	if string(o.Result.ResultNext) != `{"l":50}` || string(o.Result.ResultTotal) != `{"l":120}` {
		t.Errorf("next/total = %s %s", o.Result.ResultNext, o.Result.ResultTotal)
	}
	var times map[string]map[string]any
	if err := json.Unmarshal(o.Result.ResultTime, &times); err != nil || len(times) != 3 || times["z"]["date_start"] == nil {
		t.Errorf("result_time = %s (%v)", o.Result.ResultTime, err)
	}

	// List cmd over a text/plain form, halt on ("false" is truthy in PHP).
	o = run("text/plain", "HALT=false&CMD[]=server.time&CMD[]=pull.fail&CMD[]=server.time")
	if string(o.Result.Result) != `["2026-03-31T17:05:18+02:00"]` {
		t.Errorf("halt result = %s", o.Result.Result)
	}
	if string(o.Result.ResultError) != `{"1":{"error":"WRONG_AUTH_TYPE","error_description":"Access for this method allowed only by application authorization."}}` {
		t.Errorf("halt result_error = %s", o.Result.ResultError)
	}
	if string(o.Result.ResultNext) != `[]` || string(o.Result.ResultTotal) != `[]` {
		t.Errorf("empty maps must be []: %s %s", o.Result.ResultNext, o.Result.ResultTotal)
	}

	// Halt off: the third item still runs.
	o = run("application/x-www-form-urlencoded", "halt=0&cmd[]=server.time&cmd[]=pull.fail&cmd[]=server.time")
	if string(o.Result.Result) != `{"0":"2026-03-31T17:05:18+02:00","2":"2026-03-31T17:05:18+02:00"}` {
		t.Errorf("no-halt result = %s", o.Result.Result)
	}

	// 50 items are run; 51 are refused whole, with the documented error.
	var b strings.Builder
	b.WriteString("auth=good&cmd[]=server.time")
	for range 49 {
		b.WriteString("&cmd[]=server.time")
	}
	o = run("text/plain", b.String())
	if string(o.Result.ResultError) != `[]` || strings.Count(string(o.Result.Result), "2026-") != 50 {
		t.Errorf("50 items: %s %s", o.Result.Result, o.Result.ResultError)
	}
	b.WriteString("&cmd[]=server.time")
	w, out := do(t, s, http.MethodPost, "/rest/batch", "text/plain", b.String())
	if w.Code != http.StatusBadRequest || out["error"] != "ERROR_BATCH_LENGTH_EXCEEDED" || out["error_description"] != "Max batch length exceeded" {
		t.Errorf("51 items: %d %v", w.Code, out)
	}
}

func TestBatchScope(t *testing.T) {
	s, _ := newTestServer(t)
	w, _ := do(t, s, http.MethodGet, "/rest/batch?auth=noscope&cmd[a]=pull.echo&cmd[b]=server.time", "", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"result_error":{"a":{"error":"insufficient_scope"`) || !strings.Contains(w.Body.String(), `"result":{"b":`) {
		t.Errorf("%d %s", w.Code, w.Body)
	}
	// batch itself needs authentication.
	w, out := do(t, s, http.MethodGet, "/rest/batch?cmd[a]=server.time", "", "")
	if w.Code != 401 || out["error"] != "NO_AUTH_FOUND" {
		t.Errorf("%d %v", w.Code, out)
	}
}

func TestRegisterPanicsOnDuplicate(t *testing.T) {
	s, _ := newTestServer(t)
	defer func() {
		if recover() == nil {
			t.Error("no panic on duplicate")
		}
	}()
	s.Register(Method{Name: "PULL.ECHO", Handler: func(context.Context, Caller, Params) (any, error) { return nil, nil }})
}
