package realtime

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pushpull/pushpull/internal/wire/pb"
)

// testOrigin is the page origin of the cross-origin tests: another host
// than the server's.
const testOrigin = "http://app.example"

// preflightRefusal is what a browser's CORS preflight check (Fetch
// standard, "CORS-preflight fetch") finds wrong with a preflight answer for
// a request with method and the non-safelisted request headers, or nil
// when the browser would go on with the request.
func preflightRefusal(resp *http.Response, method string, headers ...string) error {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	h := resp.Header
	if o := h.Get("Access-Control-Allow-Origin"); o != "*" && o != testOrigin {
		return fmt.Errorf("Access-Control-Allow-Origin %q", o)
	}
	list := func(name string) map[string]bool {
		set := map[string]bool{}
		for _, v := range h.Values(name) {
			for _, item := range strings.Split(v, ",") {
				set[strings.ToLower(strings.TrimSpace(item))] = true
			}
		}
		return set
	}
	methods := list("Access-Control-Allow-Methods")
	// Browsers send GET, HEAD and POST whatever the answer lists; the
	// listing is checked for them too, as the routes must tell the truth.
	if !methods[strings.ToLower(method)] && !methods["*"] {
		return fmt.Errorf("method %s not in Access-Control-Allow-Methods %q", method, h.Values("Access-Control-Allow-Methods"))
	}
	allowed := list("Access-Control-Allow-Headers")
	for _, name := range headers {
		if !allowed[strings.ToLower(name)] && !allowed["*"] {
			return fmt.Errorf("header %s not in Access-Control-Allow-Headers %q", name, h.Values("Access-Control-Allow-Headers"))
		}
	}
	return nil
}

func preflight(t *testing.T, u, method string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodOptions, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", testOrigin)
	req.Header.Set("Access-Control-Request-Method", method)
	if len(headers) > 0 {
		// Browsers send the names lower-cased, sorted, comma-separated.
		req.Header.Set("Access-Control-Request-Headers", strings.ToLower(strings.Join(headers, ",")))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestPreflights checks that every route's CORS preflight lets a browser
// send what the route takes, and lists exactly the methods it serves.
func TestPreflights(t *testing.T) {
	ts := newTestServer(t, nil)
	cases := []struct {
		path    string
		methods string
		method  string
		headers []string
	}{
		{"/sub/", "GET, OPTIONS", http.MethodGet, []string{"If-Modified-Since", "If-None-Match"}},
		{"/bitrix/subws/", "GET, OPTIONS", http.MethodGet, []string{"If-Modified-Since", "If-None-Match"}},
		// A browser client that labels its protobuf body needs a preflight.
		{"/pubweb/", "POST, OPTIONS", http.MethodPost, []string{"Content-Type"}},
		{"/pubweb/", "POST, OPTIONS", http.MethodPost, []string{"Content-Type", "If-Modified-Since", "If-None-Match"}},
		{"/pub/", "GET, POST, OPTIONS", http.MethodPost, []string{"Content-Type", "Message-Expiry"}},
		{"/pub/", "GET, POST, OPTIONS", http.MethodGet, []string{"If-Modified-Since"}},
		{"/api/", "POST, OPTIONS", http.MethodPost, []string{"Content-Type"}},
	}
	for _, tc := range cases {
		resp := preflight(t, ts.URL+tc.path, tc.method, tc.headers...)
		if err := preflightRefusal(resp, tc.method, tc.headers...); err != nil {
			t.Errorf("%s %s with %v: a browser refuses: %v", tc.path, tc.method, tc.headers, err)
		}
		if got := resp.Header.Get("Access-Control-Allow-Methods"); got != tc.methods {
			t.Errorf("%s: Access-Control-Allow-Methods %q, want the methods it serves, %q", tc.path, got, tc.methods)
		}
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/plain" {
			t.Errorf("%s: preflight answer %d %q, want the reference's 200 text/plain", tc.path, resp.StatusCode, ct)
		}
	}
	// A method the route does not serve is not allowed.
	if err := preflightRefusal(preflight(t, ts.URL+"/pubweb/", http.MethodDelete), http.MethodDelete); err == nil {
		t.Error("/pubweb/ preflight allows DELETE, which it does not serve")
	}
}

// TestCrossOriginClientPublish posts a labelled protobuf body to /pubweb/
// as a page on another origin does after its preflight: the message is
// published and the page may read the answer.
func TestCrossOriginClientPublish(t *testing.T) {
	ts := newTestServer(t, nil)
	priv, pub, target := newChannel(t), newChannel(t), newChannel(t)
	u := ts.URL + "/pubweb/?CHANNEL_ID=" + url.QueryEscape(ts.signer.SignPrivate(priv, pub))
	if err := preflightRefusal(preflight(t, u, http.MethodPost, "Content-Type"), http.MethodPost, "Content-Type"); err != nil {
		t.Fatalf("preflight refused: %v", err)
	}
	data, err := proto.Marshal(&pb.RequestBatch{Requests: []*pb.Request{incoming(`{"cross":"origin"}`, 60, ts.public(target))}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", testOrigin)
	req.Header.Set("Content-Type", "application/octet-stream")
	before := ts.broker.Stats().Messages
	code, body := do(t, req) // fails the test without Access-Control-Allow-Origin: *
	if code != http.StatusOK || body != "" {
		t.Fatalf("cross-origin publish: %d %q", code, body)
	}
	if after := ts.broker.Stats().Messages; after != before+1 {
		t.Fatalf("stored messages %d → %d, want one more", before, after)
	}
}
