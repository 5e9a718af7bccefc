package realtime

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/store/sqlite"
	"github.com/pushpull/pushpull/internal/tenant"
	"github.com/pushpull/pushpull/internal/token"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// The shared-mode test server's key, and two portals registered on it. The
// test server is reached as 127.0.0.1, the host tenants are keyed by.
const (
	sharedGlobalKey = "SECURITYKEY123456-global-key-of-the-shared-server"
	clientA         = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
	clientB         = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2"
	testHost        = "127.0.0.1"
	unknownClient   = "cccccccccccccccccccccccccccccccc"
)

// sharedServer is a realtime server in shared mode over a real SQLite
// registry.
type sharedServer struct {
	*testServer
	dir *tenant.Directory
}

func newSharedServer(t *testing.T, verifier tenant.Verifier, tweaks ...func(*Options)) *sharedServer {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "registry.db"), "portal.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	signer := channel.NewSigner([]byte(sharedGlobalKey), channel.SHA1)
	dir := tenant.NewDirectory(st, tenant.Options{GlobalKey: []byte(sharedGlobalKey), Algo: channel.SHA1, HomeSigner: signer},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := dir.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, func(o *Options) {
		o.Tenants, o.TenantVerifier = dir, verifier
		o.RegisterPaths, o.SystemctlPaths = []string{"/register-client/"}, []string{"/systemctl/"}
		for _, tw := range tweaks {
			tw(o)
		}
	})
	// The test server's own signer is the personal one; shared mode signs
	// with the server's key and the tenants' keys.
	ts.rt.signer, ts.rt.tokenKey, ts.signer = signer, signer.Key(), signer
	return &sharedServer{testServer: ts, dir: dir}
}

// add registers a tenant as the operator would, and returns its signer.
func (ss *sharedServer) add(t *testing.T, clientID string) *channel.Signer {
	t.Helper()
	tn, err := ss.dir.Add(t.Context(), clientID, testHost, tenant.OriginOperator)
	if err != nil {
		t.Fatal(err)
	}
	if want := tenant.DeriveKey([]byte(sharedGlobalKey), clientID, testHost); tn.Key != want {
		t.Fatalf("tenant key %s, want the derived %s", tn.Key, want)
	}
	return channel.NewSigner([]byte(tn.Key), channel.SHA1)
}

// subQueryAs is the subscribe query of a portal's client.
func subQueryAs(signer *channel.Signer, clientID string, chans []channel.ID, extra string) string {
	signed := make([]string, len(chans))
	for i, c := range chans {
		signed[i] = signer.SignChannel(c)
	}
	q := "CHANNEL_ID=" + url.QueryEscape(strings.Join(signed, "/")) + "&revision=19"
	if clientID != "" {
		q += "&clientId=" + clientID
	}
	if extra != "" {
		q += "&" + extra
	}
	return q
}

// pubAs posts a text publish as a portal's backend: the body signed with
// its key (signer nil: no signature).
func (ss *sharedServer) pubAs(t *testing.T, signer *channel.Signer, clientID, body string, chans ...channel.ID) (int, string) {
	t.Helper()
	ids := make([]string, len(chans))
	for i, c := range chans {
		ids[i] = c.String()
	}
	u := ss.URL + "/pub/?CHANNEL_ID=" + strings.Join(ids, "/") + "&clientId=" + clientID
	if signer != nil {
		u += "&signature=" + hex.EncodeToString(signer.Sign([]byte(body)))
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func post(t *testing.T, u, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return do(t, req)
}

func verificationBody(clientID string) string {
	q := url.Values{"BX_LICENCE": {clientID}, "BX_TYPE": {"CP"}, "BX_HASH": {"0123456789abcdef0123456789abcdef"}, "BX_ALL": {"y"}}
	return url.Values{"verificationQuery": {q.Encode()}}.Encode()
}

func TestSharedRegisterOpen(t *testing.T) {
	ss := newSharedServer(t, tenant.Open{})
	code, body := post(t, ss.URL+"/register-client/", "application/x-www-form-urlencoded", verificationBody(clientA))
	want := fmt.Sprintf(`{"securityKey":%q,"status":"success"}`, tenant.DeriveKey([]byte(sharedGlobalKey), clientA, testHost))
	if code != http.StatusOK || body != want {
		t.Fatalf("register: %d %s, want 200 %s", code, body, want)
	}
	// The key it was handed opens its channels.
	var got struct{ SecurityKey string }
	_ = json.Unmarshal([]byte(body), &got)
	signer := channel.NewSigner([]byte(got.SecurityKey), channel.SHA1)
	ch := newChannel(t)
	c := ss.dial(t, subQueryAs(signer, clientA, []channel.ID{ch}, ""))
	tn, err := ss.dir.Lookup(t.Context(), clientA, testHost)
	if err != nil {
		t.Fatal(err)
	}
	ss.waitSubscribers(t, tn.Scope(ch), 1)
	if code, text := ss.pubAs(t, signer, clientA, `{"n":1}`, ch); code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, text)
	}
	if f := c.next(t); f.Channel != ch.String() || string(f.Text) != `{"n":1}` {
		t.Fatalf("frame %+v", f)
	}
	// A client id that is not one is refused by the open verifier.
	code, body = post(t, ss.URL+"/register-client/", "", verificationBody("short"))
	if code != http.StatusOK || body != `{"error":"WRONG_REQUEST","status":"error"}` {
		t.Fatalf("register with a bad BX_LICENCE: %d %s", code, body)
	}
}

func TestSharedRegisterOperatorRefuses(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{})
	code, body := post(t, ss.URL+"/register-client/", "", verificationBody(clientA))
	if code != http.StatusOK || body != `{"error":"REGISTRATION_DISABLED","status":"error"}` {
		t.Fatalf("register: %d %s", code, body)
	}
	if _, err := ss.dir.Lookup(t.Context(), clientA, testHost); err != tenant.ErrUnknown {
		t.Fatalf("lookup after a refused registration: %v", err)
	}
}

func TestSharedRegisterURL(t *testing.T) {
	verdicts := map[string]string{
		clientA: `{"status":"ok","result":{"LICENSE_KEY_HEAD":"` + clientA + `","ACTIVE":"Y","DATE_TO":"2099-01-01"}}`,
	}
	codes := []string{tenant.WrongSign, tenant.WrongRequest, tenant.LicenseNotActive, tenant.LicenseDemo, tenant.LicenseNotFound}
	for i, c := range codes {
		verdicts[fmt.Sprintf("%031d%d", 0, i)] = `{"status":"error","text":"` + c + `"}`
	}
	var seen []string
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		q, _ := url.ParseQuery(string(data))
		seen = append(seen, r.Header.Get("Content-Type")+" "+q.Get("BX_TYPE"))
		_, _ = io.WriteString(w, verdicts[q.Get("BX_LICENCE")])
	}))
	defer endpoint.Close()
	ss := newSharedServer(t, tenant.URL{Endpoint: endpoint.URL})

	code, body := post(t, ss.URL+"/register-client/", "", verificationBody(clientA))
	want := fmt.Sprintf(`{"securityKey":%q,"status":"success"}`, tenant.DeriveKey([]byte(sharedGlobalKey), clientA, testHost))
	if code != http.StatusOK || body != want {
		t.Fatalf("register: %d %s, want %s", code, body, want)
	}
	for i, c := range codes {
		code, body := post(t, ss.URL+"/register-client/", "", verificationBody(fmt.Sprintf("%031d%d", 0, i)))
		if want := `{"error":"` + c + `","status":"error"}`; code != http.StatusOK || body != want {
			t.Errorf("refused with %s: %d %s, want %s", c, code, body, want)
		}
	}
	if len(seen) != 1+len(codes) || seen[0] != "application/x-www-form-urlencoded CP" {
		t.Fatalf("the endpoint saw %q", seen)
	}
	if list, _ := ss.dir.Lookup(t.Context(), fmt.Sprintf("%031d%d", 0, 0), testHost); list != nil {
		t.Fatal("a refused portal was registered")
	}
}

func TestSharedRegisterBadRequests(t *testing.T) {
	ss := newSharedServer(t, tenant.Open{})
	for _, tc := range []struct{ name, body, want string }{
		{"empty", "", "4022: Empty request."},
		{"no verificationQuery", "foo=bar", "4024: A verification query is required."},
		{"empty verificationQuery", "verificationQuery=", "4024: A verification query is required."},
	} {
		code, body := post(t, ss.URL+"/register-client/", "", tc.body)
		if code != http.StatusBadRequest || body != tc.want {
			t.Errorf("%s: %d %q, want 400 %q", tc.name, code, body, tc.want)
		}
	}
	code, _ := post(t, ss.URL+"/register-client/", "", "verificationQuery="+strings.Repeat("x", 1100))
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize registration: %d, want 413", code)
	}
	if ss.dir.Len() != 0 {
		t.Fatalf("%d tenants after refused registrations", ss.dir.Len())
	}
}

func TestSharedSubscribeNeedsClientID(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{})
	signerA := ss.add(t, clientA)
	ch := newChannel(t)
	for _, tc := range []struct{ name, query, want string }{
		{"no clientId", subQueryAs(signerA, "", []channel.ID{ch}, ""), "4036: Wrong Client Id."},
		{"unknown clientId", subQueryAs(signerA, unknownClient, []channel.ID{ch}, ""), "4036: Wrong Client Id."},
		{"short clientId", subQueryAs(signerA, "aaaa", []channel.ID{ch}, ""), "4036: Wrong Client Id."},
		// The server's own key signs nothing of a tenant's, nor does
		// another portal's.
		{"signed with the global key", subQueryAs(ss.signer, clientA, []channel.ID{ch}, ""), "4010: Wrong Channel Id."},
		{"signed with another portal's key", subQueryAs(ss.add(t, clientB), clientA, []channel.ID{ch}, ""), "4010: Wrong Channel Id."},
	} {
		resp, body := longPoll(t, ss.URL+"/sub/?"+tc.query)
		if resp.StatusCode != http.StatusBadRequest || body != tc.want {
			t.Errorf("long poll, %s: %d %q, want 400 %q", tc.name, resp.StatusCode, body, tc.want)
		}
	}
	// A WebSocket is refused before the upgrade, as Push server 2.x does.
	_, _, _, err := ws.Dial(t.Context(), "ws"+strings.TrimPrefix(ss.URL, "http")+"/sub/?"+subQueryAs(signerA, unknownClient, []channel.ID{ch}, ""))
	var status ws.StatusError
	if !asStatus(err, &status) || int(status) != http.StatusBadRequest {
		t.Fatalf("websocket with an unknown clientId: %v, want status 400", err)
	}
}

func asStatus(err error, s *ws.StatusError) bool {
	if e, ok := err.(ws.StatusError); ok {
		*s = e
		return true
	}
	return false
}

func TestSharedBackendNeedsClientIDAndSignature(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{})
	signerA := ss.add(t, clientA)
	signerB := ss.add(t, clientB)
	ch := newChannel(t)
	check := func(what string, code int, body string, want string) {
		t.Helper()
		if code != http.StatusBadRequest || body != want {
			t.Errorf("%s: %d %q, want 400 %q", what, code, body, want)
		}
	}
	code, body := ss.pubAs(t, signerA, "", "x", ch)
	check("POST /pub/ without clientId", code, body, "4025: Client Id is required.")
	code, body = ss.pubAs(t, signerA, "cccccccccccccccccccccccccccccccc", "x", ch)
	check("POST /pub/ with an unknown clientId", code, body, "4025: Client Id is required.")
	code, body = ss.pubAs(t, nil, clientA, "x", ch)
	check("POST /pub/ unsigned", code, body, "4026: Wrong request signature.")
	code, body = ss.pubAs(t, signerB, clientA, "x", ch)
	check("POST /pub/ signed with another tenant's key", code, body, "4026: Wrong request signature.")
	code, body = ss.pubAs(t, ss.signer, clientA, "x", ch)
	check("POST /pub/ signed with the server's key", code, body, "4026: Wrong request signature.")

	// GET /pub/ signs the CHANNEL_ID value.
	get := func(signer *channel.Signer, clientID string) (int, string) {
		u := ss.URL + "/pub/?CHANNEL_ID=" + ch.String() + "&clientId=" + clientID
		if signer != nil {
			u += "&signature=" + hex.EncodeToString(signer.Sign([]byte(ch.String())))
		}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		return do(t, req)
	}
	code, body = get(signerA, "")
	check("GET /pub/ without clientId", code, body, "4025: Client Id is required.")
	code, body = get(signerB, clientA)
	check("GET /pub/ with another tenant's signature", code, body, "4026: Wrong request signature.")
	if code, body = get(signerA, clientA); code != http.StatusOK || body != `{"infos":[]}` {
		t.Errorf("GET /pub/ signed: %d %q", code, body)
	}

	// Binary /pub/ signs the body.
	batch := &pb.RequestBatch{Requests: []*pb.Request{incoming("x", 0, private(ch))}}
	code, raw := ss.postBatch(t, "/pub/?binaryMode=true&clientId="+clientA+"&signature=00", batch)
	check("binary /pub/ badly signed", code, string(raw), "4026: Wrong request signature.")
	code, raw = ss.postBatch(t, "/pub/?binaryMode=true", batch)
	check("binary /pub/ without clientId", code, string(raw), "4025: Client Id is required.")
}

// TestSharedIsolation: two portals that use the same channel id and the
// same hostId reach only their own subscribers, history, presence and users.
func TestSharedIsolation(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{})
	signerA, signerB := ss.add(t, clientA), ss.add(t, clientB)
	ch := newChannel(t)

	// Publish: each backend reaches its own subscriber only, and the
	// frame names the channel by the id the portal knows.
	a := ss.dial(t, subQueryAs(signerA, clientA, []channel.ID{ch}, ""))
	b := ss.dial(t, subQueryAs(signerB, clientB, []channel.ID{ch}, ""))
	ss.waitWebSockets(t, 2)
	if code, text := ss.pubAs(t, signerA, clientA, `{"to":"A"}`, ch); code != http.StatusOK {
		t.Fatalf("publish A: %d %s", code, text)
	}
	if code, text := ss.pubAs(t, signerB, clientB, `{"to":"B"}`, ch); code != http.StatusOK {
		t.Fatalf("publish B: %d %s", code, text)
	}
	// Delivered in id order: a message that crossed over would come
	// before the second one.
	if code, text := ss.pubAs(t, signerA, clientA, `{"to":"A2"}`, ch); code != http.StatusOK {
		t.Fatalf("publish A: %d %s", code, text)
	}
	if code, text := ss.pubAs(t, signerB, clientB, `{"to":"B2"}`, ch); code != http.StatusOK {
		t.Fatalf("publish B: %d %s", code, text)
	}
	for _, want := range []string{`{"to":"A"}`, `{"to":"A2"}`} {
		if f := a.next(t); string(f.Text) != want || f.Channel != ch.String() {
			t.Fatalf("A got %+v, want %s on %s", f, want, ch)
		}
	}
	for _, want := range []string{`{"to":"B"}`, `{"to":"B2"}`} {
		if f := b.next(t); string(f.Text) != want || f.Channel != ch.String() {
			t.Fatalf("B got %+v, want %s on %s", f, want, ch)
		}
	}

	// History: a recovering client of B gets B's message only.
	resp, body := longPoll(t, ss.URL+"/sub/?"+subQueryAs(signerB, clientB, []channel.ID{ch}, "mid=00000000000000000000000001"))
	if resp.StatusCode != http.StatusOK || strings.Contains(body, `"A"`) || !strings.Contains(body, `"B"`) {
		t.Fatalf("B's recovery: %d %q", resp.StatusCode, body)
	}

	// Presence: B's online check sees B's subscriber, not A's; after B's
	// goes, none, although A's is still there.
	stats := func(signer *channel.Signer, clientID string) string {
		req, _ := http.NewRequest(http.MethodGet, ss.URL+"/pub/?CHANNEL_ID="+ch.String()+"&clientId="+clientID+
			"&signature="+hex.EncodeToString(signer.Sign([]byte(ch.String()))), nil)
		_, body := do(t, req)
		return body
	}
	want := `{"infos":[{"channel":"` + ch.String() + `","subscribers":1}]}`
	if got := stats(signerB, clientB); got != want {
		t.Fatalf("B's stats %s, want %s", got, want)
	}
	_ = b.conn.Close()
	waitFor(t, "B's subscriber gone", func() bool { return ss.rt.Stat().WebSockets == 1 })
	waitFor(t, "B's stats empty", func() bool { return stats(signerB, clientB) == `{"infos":[]}` })
	if got := stats(signerA, clientA); got != want {
		t.Fatalf("A's stats %s, want %s", got, want)
	}
}

// TestSharedUserIsolation: version 5 users of two portals with the same
// hostId (the tokens' iss) are two sets of users.
func TestSharedUserIsolation(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{})
	signerA, signerB := ss.add(t, clientA), ss.add(t, clientB)
	now := time.Now()
	tokenOf := func(signer *channel.Signer) string {
		return token.Sign(token.Claims{Issuer: testTenant, IssuedAt: now, Expires: now.Add(time.Hour), User: 7}, signer.Key())
	}
	a := ss.dialRPC(t, "jsonRpc=true&token="+tokenOf(signerA)+"&clientId="+clientA)
	b := ss.dialRPC(t, "jsonRpc=true&token="+tokenOf(signerB)+"&clientId="+clientB)
	ss.waitWebSockets(t, 2)
	// A token signed with another portal's key opens nothing.
	if ce := ss.dialRPC(t, "jsonRpc=true&token="+tokenOf(signerA)+"&clientId="+clientB).waitClosed(t); ce.Code != 4010 {
		t.Fatalf("a token of A presented as B: closed with %d %q, want 4010", ce.Code, ce.Reason)
	}
	publish := func(signer *channel.Signer, clientID, text string) {
		t.Helper()
		body := `[{"jsonrpc":"2.0","method":"publish","params":{"userList":[7],"body":{"module_id":"t","command":"c","params":{"to":"` + text + `"}}}}]`
		req, _ := http.NewRequest(http.MethodPost, ss.URL+"/api/?hostId="+testTenant+"&clientId="+clientID+
			"&signature="+hex.EncodeToString(signer.Sign([]byte(body))), strings.NewReader(body))
		if code, resp := do(t, req); code != http.StatusOK || resp != `[{"jsonrpc":"2.0","id":null,"result":true}]` {
			t.Fatalf("api publish %s: %d %s", text, code, resp)
		}
	}
	// In id order: a message that crossed over would come between.
	publish(signerA, clientA, "A")
	publish(signerB, clientB, "B")
	publish(signerA, clientA, "A2")
	publish(signerB, clientB, "B2")
	for _, want := range []string{`"A"`, `"A2"`} {
		if m := a.next(t); !strings.Contains(string(m.Body), want) {
			t.Fatalf("A's user got %s, want %s", m.Body, want)
		}
	}
	for _, want := range []string{`"B"`, `"B2"`} {
		if m := b.next(t); !strings.Contains(string(m.Body), want) {
			t.Fatalf("B's user got %s, want %s", m.Body, want)
		}
	}
	// /api/ without a known clientId is refused like /pub/.
	req, _ := http.NewRequest(http.MethodPost, ss.URL+"/api/?hostId="+testTenant, strings.NewReader("[]"))
	if code, body := do(t, req); code != http.StatusBadRequest || body != "4025: Client Id is required." {
		t.Fatalf("api without clientId: %d %s", code, body)
	}
}

func (ss *sharedServer) systemctl(t *testing.T, body string, signed bool) (int, string) {
	t.Helper()
	u := ss.URL + "/systemctl/"
	if signed {
		u += "?signature=" + hex.EncodeToString(ss.signer.Sign([]byte(body)))
	}
	return post(t, u, "", body)
}

func TestSystemctlErrors(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{})
	ss.add(t, clientA)
	for _, tc := range []struct {
		name, body string
		signed     bool
		code       int
		want       string
	}{
		{"empty", "", true, 400, "4022: Empty request."},
		{"unsigned", `{"method":"unregister","params":{}}`, false, 400, "4026: Wrong request signature."},
		{"not JSON", `{"method":`, true, 400, "4032: Bad JSON request."},
		{"JSON but not an object", `42`, true, 400, "4032: Bad JSON request."},
		{"no method", `{"params":{}}`, true, 400, "4033: JSON object doesn't have 'method' property."},
		{"method not a string", `{"method":1,"params":{}}`, true, 400, "4033: JSON object doesn't have 'method' property."},
		{"no params", `{"method":"unregister"}`, true, 400, "4034: JSON object doesn't have 'params' property."},
		{"params null", `{"method":"unregister","params":null}`, true, 400, "4034: JSON object doesn't have 'params' property."},
		{"unknown command", `{"method":"reboot","params":{}}`, true, 400, "4035: Unknown command."},
		{"bad client id", `{"method":"unregister","params":{"clientId":"x","host":"127.0.0.1"}}`, true, 200, `{"result":null,"error":"Wrong Client Id."}`},
		{"unknown client", `{"method":"unregister","params":{"clientId":"` + clientB + `","host":"127.0.0.1"}}`, true, 200, `{"result":null,"error":"Client not found."}`},
		{"other host", `{"method":"unregister","params":{"clientId":"` + clientA + `","host":"other.test"}}`, true, 200, `{"result":null,"error":"Client not found."}`},
	} {
		code, body := ss.systemctl(t, tc.body, tc.signed)
		if code != tc.code || body != tc.want {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, body, tc.code, tc.want)
		}
	}
	if _, err := ss.dir.Lookup(t.Context(), clientA, testHost); err != nil {
		t.Fatalf("refused commands changed the tenants: %v", err)
	}
}

// TestUnregisterCutsConnections: /systemctl/ unregister removes the tenant
// and closes its connections with 4036; the other tenant's stay.
func TestUnregisterCutsConnections(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{})
	signerA, signerB := ss.add(t, clientA), ss.add(t, clientB)
	ch := newChannel(t)
	a := ss.dial(t, subQueryAs(signerA, clientA, []channel.ID{ch}, ""))
	b := ss.dial(t, subQueryAs(signerB, clientB, []channel.ID{ch}, ""))
	ss.waitWebSockets(t, 2)
	lp := newChannel(t)
	poll := startLongPoll(ss.URL + "/sub/?" + subQueryAs(signerA, clientA, []channel.ID{lp}, ""))
	tnA, err := ss.dir.Lookup(t.Context(), clientA, testHost)
	if err != nil {
		t.Fatal(err)
	}
	ss.waitSubscribers(t, tnA.Scope(lp), 1) // where A's channel lives inside

	code, body := ss.systemctl(t, `{"method":"unregister","params":{"clientId":"`+clientA+`","host":"127.0.0.1"}}`, true)
	if code != http.StatusOK || body != `{"result":{"status":"success"},"error":null}` {
		t.Fatalf("unregister: %d %s", code, body)
	}
	if ce := a.waitClosed(t); ce.Code != 4036 || ce.Reason != "4036: Wrong Client Id." {
		t.Fatalf("A's WebSocket closed with %d %q", ce.Code, ce.Reason)
	}
	resp, pbody := awaitLongPoll(t, poll)
	if resp.StatusCode != http.StatusBadRequest || pbody != "4036: Wrong Client Id." {
		t.Fatalf("A's long poll: %d %q", resp.StatusCode, pbody)
	}
	if resp, body := longPoll(t, ss.URL+"/sub/?"+subQueryAs(signerA, clientA, []channel.ID{ch}, "")); resp.StatusCode != 400 || body != "4036: Wrong Client Id." {
		t.Fatalf("A subscribing after unregister: %d %q", resp.StatusCode, body)
	}
	// B is untouched.
	if code, text := ss.pubAs(t, signerB, clientB, `{"still":"here"}`, ch); code != http.StatusOK {
		t.Fatalf("publish B: %d %s", code, text)
	}
	if f := b.next(t); string(f.Text) != `{"still":"here"}` {
		t.Fatalf("B got %+v", f)
	}
}

func TestQueryParamIsValuesGet(t *testing.T) {
	for _, raw := range []string{"", "clientId=abc", "a=1&clientId=x%2By&clientId=2", "clientId", "clientId=", "x=clientId&clientId=a+b", "clientId=%zz", "clientIdx=1&clientId=2"} {
		q, err := url.ParseQuery(raw)
		want := q.Get("clientId")
		if err != nil && strings.Contains(raw, "%zz") {
			want = "" // a bad escape: the whole query is refused by ParseQuery's callers too
		}
		if got := queryParam(raw, "clientId"); got != want {
			t.Errorf("queryParam(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestSharedClientPublishIsolation: client-to-client messages (version 4,
// /pubweb/) to a public id reach that id's subscribers of the sender's own
// portal only, even with the other portal's id signed by the sender's
// key, and the sender id the receiver sees is the one its portal knows.
func TestSharedClientPublishIsolation(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{})
	signerA, signerB := ss.add(t, clientA), ss.add(t, clientB)
	priv, pub := newChannel(t), newChannel(t)
	// A's user listens on priv with its public id pub.
	a := ss.dial(t, "CHANNEL_ID="+url.QueryEscape(signerA.SignPrivate(priv, pub))+"&clientId="+clientA)
	ss.waitWebSockets(t, 1)
	send := func(signer *channel.Signer, clientID, text string) {
		t.Helper()
		from, fromPub := newChannel(t), newChannel(t)
		batch := &pb.RequestBatch{Requests: []*pb.Request{incoming(text, 0,
			&pb.Receiver{Id: pub[:], Signature: signer.Sign([]byte("public:" + pub.String()))})}}
		code, body := ss.postBatch(t, "/pubweb/?clientId="+clientID+"&CHANNEL_ID="+url.QueryEscape(signer.SignPrivate(from, fromPub)), batch)
		if code != http.StatusOK {
			t.Fatalf("pubweb as %s: %d %q", clientID[:1], code, body)
		}
	}
	// Without clientId, and no home portal, a client publish is refused
	// like a subscribe.
	code, body := ss.postBatch(t, "/pubweb/?CHANNEL_ID="+url.QueryEscape(signerA.SignPrivate(newChannel(t), newChannel(t))), &pb.RequestBatch{})
	if code != http.StatusBadRequest || string(body) != "4036: Wrong Client Id." {
		t.Fatalf("pubweb without clientId: %d %q", code, body)
	}
	send(signerB, clientB, `{"from":"B"}`)
	send(signerA, clientA, `{"from":"A"}`)
	if f := a.next(t); string(f.Text) != `{"from":"A"}` {
		t.Fatalf("A's user got %+v first: B's message crossed over", f)
	}
}

// TestSharedConnectionLimitPerTenant: the per-channel connection cap
// counts each portal's connections on its own channel: a second portal
// using the same ids neither evicts nor is evicted.
func TestSharedConnectionLimitPerTenant(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{}, func(o *Options) { o.MaxConnPerChannel = 1 })
	signerA, signerB := ss.add(t, clientA), ss.add(t, clientB)
	priv, pub := newChannel(t), newChannel(t)
	a1 := ss.dial(t, "CHANNEL_ID="+url.QueryEscape(signerA.SignPrivate(priv, pub))+"&clientId="+clientA)
	ss.waitWebSockets(t, 1)
	b1 := ss.dial(t, "CHANNEL_ID="+url.QueryEscape(signerB.SignPrivate(priv, pub))+"&clientId="+clientB)
	ss.waitWebSockets(t, 2)
	// A second connection of A's pushes A's first one out, not B's.
	ss.dial(t, "CHANNEL_ID="+url.QueryEscape(signerA.SignPrivate(priv, pub))+"&clientId="+clientA)
	if ce := a1.waitClosed(t); ce.Code != 4029 {
		t.Fatalf("A's first connection closed with %d %q, want 4029", ce.Code, ce.Reason)
	}
	if code, text := ss.pubAs(t, signerB, clientB, `{"b":1}`, priv); code != http.StatusOK {
		t.Fatalf("publish B: %d %s", code, text)
	}
	if f := b1.next(t); string(f.Text) != `{"b":1}` {
		t.Fatalf("B's connection got %+v", f)
	}
}

// TestBindTenantShowsOnlyTheTenantsIDs: a portal's session publishes as
// the public id the portal knows, and one without a public id as nobody:
// the namespace's mask never becomes a sender id.
func TestBindTenantShowsOnlyTheTenantsIDs(t *testing.T) {
	ss := newSharedServer(t, tenant.Operator{})
	ss.add(t, clientA)
	tn, err := ss.dir.Lookup(t.Context(), clientA, testHost)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(t.Context(), tenantKey{}, tn)
	priv, pub := newChannel(t), newChannel(t)
	with := newSession(ss.rt, scopeElements(ctx, []channel.Element{{ID: priv, Public: pub, HasPublic: true}}), textProtocol{})
	bindTenant(ctx, with)
	if with.publisher != pub || with.subs[0].Channel != tn.Scope(priv) {
		t.Fatalf("publisher %s (want %s), channel %s (want the scoped %s)", with.publisher, pub, with.subs[0].Channel, tn.Scope(priv))
	}
	without := newSession(ss.rt, scopeElements(ctx, []channel.Element{{ID: priv}}), textProtocol{})
	bindTenant(ctx, without)
	if !without.publisher.IsZero() {
		t.Fatalf("a session without a public id publishes as %s", without.publisher)
	}
}
