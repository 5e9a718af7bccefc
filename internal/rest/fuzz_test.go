package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fuzzContentTypes are the body encodings the parameter reader tells apart.
var fuzzContentTypes = []string{"application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=b", ""}

// FuzzRESTParams sends a query string and a body (JSON, form, text or
// multipart) through the whole request -> parameters path of the server and
// checks what a method is handed:
//   - the answer is a success or a REST error envelope, never a 500;
//   - no two top-level names differ only by case, and the consumed names
//     (auth, ...) never reach the method;
//   - a JSON body is refused as too large only if it is long enough to hold
//     more than MaxJSONValues values;
//   - for a JSON object body alone, the method sees exactly the body's names
//     (by encoding/json, case-folded, consumed ones removed).
func FuzzRESTParams(f *testing.F) {
	f.Add("auth=good", uint8(0), `{"USERS":[1,2],"params":{"a":"b"},"Users":[3]}`)
	f.Add("auth=good&x[]=1", uint8(1), "PARAMS[a][b]=1&PARAMS[a][c][]=2&users[]=5&USERS[]=6")
	f.Add("", uint8(0), `{"auth":"good","cmd":{"a":"server.time"},"k0":0,"K0":1}`)
	f.Add("auth=good", uint8(2), "a=1&A=2&auth=x")
	f.Add("auth=good", uint8(3), "--b\r\nContent-Disposition: form-data; name=\"p[a]\"\r\n\r\nv\r\n--b--\r\n")
	f.Add("auth=good", uint8(0), "["+strings.Repeat("{},", 20)+"{}]")
	f.Add("auth=good&AUTH=1&a.b=1", uint8(4), `{"a":1}`)
	s := New(fakeAuth{}, Options{MaxBody: DefaultMaxBody})
	var got Params
	s.Register(Method{Name: "pull.echo", Scope: "pull", Handler: func(_ context.Context, _ Caller, p Params) (any, error) {
		got = p
		return true, nil
	}})
	f.Fuzz(func(t *testing.T, query string, kind uint8, body string) {
		ctype := fuzzContentTypes[int(kind)%len(fuzzContentTypes)]
		r := httptest.NewRequest(http.MethodPost, "http://x/rest/pull.echo", strings.NewReader(body))
		r.URL.RawQuery = query // any bytes a client could put on the request line
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		got = nil
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)

		var env map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
			t.Fatalf("status %d, answer is not JSON: %q", w.Code, w.Body)
		}
		if w.Code != http.StatusOK {
			if w.Code >= 500 || env["error"] == nil {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if w.Code == http.StatusRequestEntityTooLarge && len(body) < MaxJSONValues {
				t.Fatalf("a %d-byte body refused as too large: %s", len(body), w.Body)
			}
			return
		}
		folded := map[string]string{}
		for k := range got {
			lk := strings.ToLower(k)
			if prev, dup := folded[lk]; dup {
				t.Fatalf("names %q and %q both reached the method", prev, k)
			}
			folded[lk] = k
		}
		for _, k := range consumedKeys {
			if _, ok := got[k]; ok {
				t.Fatalf("consumed name %q reached the method", k)
			}
		}
		if ctype != "application/json" || query != "auth=good" {
			return
		}
		dec := json.NewDecoder(strings.NewReader(body))
		dec.UseNumber()
		var obj map[string]json.RawMessage
		if dec.Decode(&obj) != nil || dec.More() || !json.Valid([]byte(body)) || bytes.HasPrefix(bytes.TrimSpace([]byte(body)), []byte("null")) {
			return
		}
		want := map[string]bool{}
		for k := range obj {
			want[strings.ToLower(k)] = true
		}
		for _, k := range consumedKeys {
			delete(want, k)
		}
		for lk := range want {
			if _, ok := folded[lk]; !ok {
				t.Fatalf("body name %q did not reach the method (got %v)", lk, got)
			}
		}
		for lk := range folded {
			if !want[lk] {
				t.Fatalf("name %q reached the method but is not in the body", lk)
			}
		}
	})
}
