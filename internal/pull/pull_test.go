package pull

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/push"
	"github.com/pushpull/pushpull/internal/rest"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/store/sqlite"
	"github.com/pushpull/pushpull/internal/token"
)

type recorder struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (r *recorder) Publish(_ context.Context, m *message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	return nil
}

type fixture struct {
	svc    *Service
	st     store.Store
	pub    *recorder
	signer *channel.Signer
	now    time.Time
	caller rest.Caller
	admin  rest.Caller
}

func newFixture(t *testing.T, version int) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/r.db", "push.example")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p, _ := st.DefaultPortal(ctx)
	app, err := st.CreateApp(ctx, p.ID, "app", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []store.User{{PortalID: p.ID, ID: 5, Active: true}, {PortalID: p.ID, ID: 1, Active: true, Admin: true}, {PortalID: p.ID, ID: 9, Active: false}} {
		if err := st.PutUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{st: st, pub: &recorder{}, signer: channel.NewSigner([]byte("SECRET"), channel.SHA1), now: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	f.svc = New(st, f.pub, f.signer, Options{ServerVersion: version, PublicURL: "https://push.example", SubPath: "/bitrix/sub/", PubWebPath: "/bitrix/rest/",
		Tenant: p.MemberID, Now: func() time.Time { return f.now }})
	f.caller = rest.Caller{PortalID: p.ID, UserID: 5, AppID: app.ID, ClientID: app.ClientID, Kind: rest.KindOAuth, Scopes: []string{"pull"}, Domain: "push.example"}
	f.admin = f.caller
	f.admin.UserID, f.admin.Admin = 1, true
	return f
}

func roundTrip(t *testing.T, v any) map[string]any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestConfigGetVersion4(t *testing.T) {
	f := newFixture(t, 4)
	res, err := f.svc.configGet(context.Background(), f.caller, rest.Params{"CACHE": "N"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := roundTrip(t, res)
	server := cfg["server"].(map[string]any)
	if server["version"].(float64) != 4 || server["long_pooling_secure"] != "https://push.example/bitrix/sub/" ||
		server["websocket_secure"] != "wss://push.example/bitrix/sub/" || server["publish_enabled"] != true ||
		server["config_timestamp"].(float64) != 0 || server["publish"] != "https://push.example/bitrix/rest/" {
		t.Fatalf("server = %v", server)
	}
	chans := cfg["channels"].(map[string]any)
	priv, shared := chans["private"].(map[string]any), chans["shared"].(map[string]any)
	// The signed forms parse back with the same key: what a subscriber sends.
	elems, err := channel.ParseList(priv["id"].(string)+"/"+shared["id"].(string), channel.ListOptions{Signer: f.signer, RequireSignature: true})
	if err != nil || len(elems) != 2 || !elems[0].HasPublic {
		t.Fatalf("channel ids do not verify: %v %v", elems, err)
	}
	if !strings.HasPrefix(priv["public_id"].(string), elems[0].Public.String()+".") || priv["type"] != "private" || shared["type"] != "shared" {
		t.Fatalf("private %v shared %v", priv, shared)
	}
	start, _ := time.Parse(time.RFC3339, priv["start"].(string))
	end, _ := time.Parse(time.RFC3339, priv["end"].(string))
	if end.Sub(start) != ChannelTTL || priv["start"] != "2026-11-27T10:00:00+00:00" {
		t.Fatalf("start %v end %v", priv["start"], priv["end"])
	}
	pc := cfg["publicChannels"].(map[string]any)["5"].(map[string]any)
	if pc["signature"] != f.signer.SignHex("public:"+pc["public_id"].(string)) {
		t.Fatalf("publicChannels %v", pc)
	}
	if api := cfg["api"].(map[string]any); api["revision_web"].(float64) != 19 {
		t.Fatalf("api %v", api)
	}
	// Stable while valid.
	again, _ := f.svc.configGet(context.Background(), f.caller, nil)
	if roundTrip(t, again)["channels"].(map[string]any)["private"].(map[string]any)["id"] != priv["id"] {
		t.Fatal("the channel changed within its lifetime")
	}
}

func TestConfigGetVersion5HasToken(t *testing.T) {
	f := newFixture(t, 5)
	res, err := f.svc.configGet(context.Background(), f.caller, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := roundTrip(t, res)
	if cfg["server"].(map[string]any)["version"].(float64) != 5 {
		t.Fatalf("server %v", cfg["server"])
	}
	jwt, _ := cfg["jwt"].(string)
	claims, err := token.Verify(jwt, []byte("SECRET"), f.now)
	if err != nil {
		t.Fatalf("jwt %q: %v", jwt, err)
	}
	if exp, _ := cfg["exp"].(float64); int64(exp) != claims.Expires.Unix() || claims.Expires.Sub(f.now) != 12*time.Hour {
		t.Fatalf("exp %v, token expires %v", cfg["exp"], claims.Expires)
	}
	p, _ := f.st.DefaultPortal(context.Background())
	chans := cfg["channels"].(map[string]any)
	elems, err := channel.ParseList(chans["private"].(map[string]any)["id"].(string)+"/"+chans["shared"].(map[string]any)["id"].(string),
		channel.ListOptions{Signer: f.signer, RequireSignature: true})
	if err != nil {
		t.Fatal(err)
	}
	// The token names the user, the tenant, both application channels and,
	// right after the private one, its public id (as Bitrix's pull module
	// does), which the push server registers as the private channel's alias.
	if claims.User != 5 || claims.Issuer != p.MemberID || len(claims.Channels) != 3 ||
		claims.Channels[0] != elems[1].ID || claims.Channels[1] != elems[0].ID || claims.Channels[2] != elems[0].Public {
		t.Fatalf("claims %+v; channels private %s shared %s", claims, elems[0].ID, elems[1].ID)
	}
	// Versions before 5 have neither.
	f4 := newFixture(t, 4)
	res, _ = f4.svc.configGet(context.Background(), f4.caller, nil)
	if cfg := roundTrip(t, res); cfg["jwt"] != nil || cfg["exp"] != nil {
		t.Fatalf("v4 config has jwt/exp: %v %v", cfg["jwt"], cfg["exp"])
	}
}

func TestConfigGetVersion3AndErrors(t *testing.T) {
	f := newFixture(t, 3)
	res, err := f.svc.configGet(context.Background(), f.caller, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := roundTrip(t, res)
	priv := cfg["channels"].(map[string]any)["private"].(map[string]any)
	if strings.Contains(priv["id"].(string), ":") || priv["public_id"] != "" || cfg["publicChannels"] != false || cfg["server"].(map[string]any)["publish_enabled"] != false {
		t.Fatalf("v3 config %v", cfg)
	}
	noApp := f.caller
	noApp.ClientID = ""
	if _, err := f.svc.configGet(context.Background(), noApp, nil); !isCode(err, "WRONG_AUTH_TYPE", 403) {
		t.Fatalf("no client id: %v", err)
	}
	noUser := f.caller
	noUser.UserID = 0
	if _, err := f.svc.configGet(context.Background(), noUser, nil); !isCode(err, "SERVER_ERROR", 500) {
		t.Fatalf("user 0: %v", err)
	}
}

func isCode(err error, code string, status int) bool {
	var re *rest.Error
	return errors.As(err, &re) && re.Code == code && re.Status == status
}

func TestRotationPublishesChannelExpire(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	first := roundTrip(t, must(f.svc.configGet(ctx, f.caller, nil)))
	f.now = f.now.Add(ChannelTTL)
	second := roundTrip(t, must(f.svc.configGet(ctx, f.caller, nil)))
	oldPriv := first["channels"].(map[string]any)["private"].(map[string]any)["id"].(string)
	newShared := second["channels"].(map[string]any)["shared"].(map[string]any)["id"].(string)
	if oldPriv == second["channels"].(map[string]any)["private"].(map[string]any)["id"] {
		t.Fatal("expired channel was not replaced")
	}
	var expires []map[string]any
	for _, m := range f.pub.msgs {
		var body map[string]any
		_ = json.Unmarshal(m.Body, &body)
		if body["command"] == "channel_expire" {
			expires = append(expires, body["params"].(map[string]any))
		}
	}
	// Private app channel, shared app channel, and the user's own channel
	// behind publicChannels.
	if len(expires) != 3 {
		t.Fatalf("%d channel_expire messages: %v", len(expires), expires)
	}
	var sawShared bool
	for _, p := range expires {
		if p["action"] != "get_config" {
			t.Fatalf("app channel_expire action %v", p["action"])
		}
		if nc, ok := p["new_channel"].(map[string]any); ok {
			sawShared = nc["id"] == newShared
		}
	}
	if !sawShared {
		t.Fatalf("the shared channel's expiry does not name its successor: %v", expires)
	}
}

func must(v any, err error) any {
	if err != nil {
		panic(err)
	}
	return v
}

func TestEventAdd(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	cfg := roundTrip(t, must(f.svc.configGet(ctx, f.caller, nil)))
	elems, _ := channel.ParseList(cfg["channels"].(map[string]any)["private"].(map[string]any)["id"].(string)+"/"+cfg["channels"].(map[string]any)["shared"].(map[string]any)["id"].(string),
		channel.ListOptions{Signer: f.signer, RequireSignature: true})
	priv, shared := elems[0].ID, elems[1].ID

	res, err := f.svc.eventAdd(ctx, f.caller, rest.Params{"COMMAND": "hello", "PARAMS": map[string]any{"a": "1"}})
	if err != nil || res != true {
		t.Fatalf("event.add: %v %v", res, err)
	}
	m := f.pub.msgs[len(f.pub.msgs)-1]
	var body map[string]any
	if err := json.Unmarshal(m.Body, &body); err != nil {
		t.Fatal(err)
	}
	extra := body["extra"].(map[string]any)
	if len(m.Receivers) != 1 || m.Receivers[0].ID != shared || body["module_id"] != "application" || body["command"] != "hello" ||
		body["params"].(map[string]any)["a"] != "1" || extra["revision_web"].(float64) != 19 || extra["server_time"] != "2026-11-27T10:00:00+00:00" || m.Expiry != 86400 {
		t.Fatalf("shared event %+v %s", m, m.Body)
	}
	// A user naming themselves, in any of the usual encodings.
	for _, uid := range []any{"5", json.Number("5"), []any{"5"}} {
		if _, err := f.svc.eventAdd(ctx, f.caller, rest.Params{"COMMAND": "me", "USER_ID": uid, "MODULE_ID": "my.module_1"}); err != nil {
			t.Fatalf("USER_ID %v: %v", uid, err)
		}
		if m := f.pub.msgs[len(f.pub.msgs)-1]; m.Receivers[0].ID != priv {
			t.Fatalf("USER_ID %v went to %v", uid, m.Receivers)
		}
	}
	// An admin reaches other users; inactive ones are skipped; JSON strings decode.
	before := len(f.pub.msgs)
	if _, err := f.svc.eventAdd(ctx, f.admin, rest.Params{"COMMAND": "all", "USER_ID": "[5,9,5,0,-1]", "PARAMS": `{"x":[1,2]}`}); err != nil {
		t.Fatal(err)
	}
	if m := f.pub.msgs[len(f.pub.msgs)-1]; len(f.pub.msgs) != before+1 || len(m.Receivers) != 1 || m.Receivers[0].ID != priv {
		t.Fatalf("admin event went to %v", m.Receivers)
	}

	errCases := []struct {
		caller rest.Caller
		p      rest.Params
		code   string
	}{
		{f.caller, rest.Params{"COMMAND": "x", "USER_ID": "1"}, "USER_ID_ACCESS_ERROR"},
		{f.caller, rest.Params{"COMMAND": "x", "USER_ID": []any{"5", "1"}}, "USER_ID_ACCESS_ERROR"},
		{f.caller, rest.Params{"COMMAND": "x", "MODULE_ID": "Upper"}, "MODULE_ID_ERROR"},
		{f.caller, rest.Params{"COMMAND": "x", "MODULE_ID": []any{"a"}}, "MODULE_ID_ERROR"},
		{f.caller, rest.Params{}, "COMMAND_ERROR"},
		{f.caller, rest.Params{"COMMAND": "bad command"}, "COMMAND_ERROR"},
		{f.caller, rest.Params{"COMMAND": "cmd\n"}, "COMMAND_ERROR"},
		{f.caller, rest.Params{"COMMAND": []any{"x"}}, "COMMAND_ERROR"},
		{f.caller, rest.Params{"COMMAND": "x", "PARAMS": "not json"}, "PARAMS_ERROR"},
		{f.caller, rest.Params{"COMMAND": "x", "PARAMS": "42"}, "PARAMS_ERROR"},
	}
	n := len(f.pub.msgs)
	for _, tc := range errCases {
		if _, err := f.svc.eventAdd(ctx, tc.caller, tc.p); !isCode(err, tc.code, 400) {
			t.Errorf("%v: %v, want %s", tc.p, err, tc.code)
		}
	}
	noApp := f.caller
	noApp.ClientID = ""
	if _, err := f.svc.eventAdd(ctx, noApp, rest.Params{"COMMAND": "x"}); !isCode(err, "WRONG_AUTH_TYPE", 403) {
		t.Errorf("no client id: %v", err)
	}
	if len(f.pub.msgs) != n {
		t.Fatal("a refused event.add published something")
	}
}

type pushRecorder struct{ got []push.Notification }

func (p *pushRecorder) Send(_ context.Context, n push.Notification) error {
	p.got = append(p.got, n)
	return nil
}

func TestPushAdd(t *testing.T) {
	f := newFixture(t, 4)
	rec := &pushRecorder{}
	f.svc.push = rec
	ctx := context.Background()
	res, err := f.svc.pushAdd(ctx, f.admin, rest.Params{"USER_ID": "[5, 5, 0]", "TEXT": " line one\nline two "})
	if err != nil || res != true || len(rec.got) != 1 {
		t.Fatalf("push.add: %v %v %v", res, err, rec.got)
	}
	n := rec.got[0]
	if len(n.UserIDs) != 1 || n.UserIDs[0] != 5 || n.Text != "line one line two" || n.SenderName != "app" || n.ClientID != f.admin.ClientID {
		t.Fatalf("notification %+v", n)
	}
	noApp := f.admin
	noApp.ClientID = ""
	for _, tc := range []struct {
		c    rest.Caller
		p    rest.Params
		code string
		st   int
	}{
		{noApp, rest.Params{"TEXT": "x"}, "WRONG_AUTH_TYPE", 403},
		{f.caller, rest.Params{"TEXT": "x", "USER_ID": "5"}, "ACCESS_ERROR", 400},
		{f.admin, rest.Params{"USER_ID": "5"}, "TEXT_ERROR", 400},
		{f.admin, rest.Params{"USER_ID": "5", "TEXT": "0"}, "TEXT_ERROR", 400},
	} {
		if _, err := f.svc.pushAdd(ctx, tc.c, tc.p); !isCode(err, tc.code, tc.st) {
			t.Errorf("%v: %v, want %s", tc.p, err, tc.code)
		}
	}
	if len(rec.got) != 1 {
		t.Fatal("a refused push.add was sent")
	}
}

func TestPublicList(t *testing.T) {
	f := newFixture(t, 4)
	res, err := f.svc.publicList(context.Background(), f.caller, rest.Params{"USERS": []any{"5", "9", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	got := roundTrip(t, res)
	if len(got) != 2 || got["9"] != nil {
		t.Fatalf("public list %v: want active users 5 and 1 only", got)
	}
	u5 := got["5"].(map[string]any)
	if u5["signature"] != f.signer.SignHex("public:"+u5["public_id"].(string)) || u5["user_id"].(float64) != 5 {
		t.Fatalf("entry %v", u5)
	}
	// The same public id that config.get's publicChannels names.
	cfg := roundTrip(t, must(f.svc.configGet(context.Background(), f.caller, nil)))
	if cfg["publicChannels"].(map[string]any)["5"].(map[string]any)["public_id"] != u5["public_id"] {
		t.Fatal("public.list and config.get disagree on the public id")
	}
}

// Repeated ids count once; more distinct ids than maxPublicUsers are
// refused with a clear error and change nothing.
func TestPublicListDeduplicatesAndCaps(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	dups := make([]any, 5000)
	for i := range dups {
		dups[i] = "5"
	}
	got := roundTrip(t, must(f.svc.publicList(ctx, f.caller, rest.Params{"USERS": dups})))
	if len(got) != 1 || got["5"] == nil {
		t.Fatalf("duplicates: %v", got)
	}
	many := make([]any, maxPublicUsers+1)
	for i := range many {
		many[i] = i + 1
	}
	if _, err := f.svc.publicList(ctx, f.caller, rest.Params{"USERS": many}); !isCode(err, rest.CodeInvalidRequest, 400) {
		t.Fatalf("%d users: %v", len(many), err)
	}
	if _, err := f.svc.publicList(ctx, f.caller, rest.Params{"USERS": many[:maxPublicUsers]}); err != nil {
		t.Fatalf("%d users: %v", maxPublicUsers, err)
	}
}

// APPLICATION=Y names the caller's application channel of each user, the
// one that user's pull.application.config.get hands out, rather than the
// user's own channel.
func TestPublicListApplication(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	own := roundTrip(t, must(f.svc.publicList(ctx, f.caller, rest.Params{"USERS": []any{"5"}})))["5"].(map[string]any)
	for _, call := range []func(rest.Params) (any, error){
		func(p rest.Params) (any, error) { return f.svc.publicList(ctx, f.admin, p) },
		func(p rest.Params) (any, error) { return f.svc.publicGet(ctx, f.admin, p) },
	} {
		got := roundTrip(t, must(call(rest.Params{"USERS": []any{"5"}, "APPLICATION": "Y"})))
		u5, _ := got["5"].(map[string]any)
		if u5 == nil || u5["public_id"] == own["public_id"] {
			t.Fatalf("APPLICATION=Y: %v (own channel %v)", got, own["public_id"])
		}
		cfg := roundTrip(t, must(f.svc.configGet(ctx, f.caller, nil)))
		priv := cfg["channels"].(map[string]any)["private"].(map[string]any)
		if !strings.HasPrefix(priv["public_id"].(string), u5["public_id"].(string)+".") ||
			u5["signature"] != f.signer.SignHex("public:"+u5["public_id"].(string)) {
			t.Fatalf("APPLICATION=Y gave %v; user 5's application config has %v", u5, priv["public_id"])
		}
	}
	got := roundTrip(t, must(f.svc.publicGet(ctx, f.caller, rest.Params{"USER_ID": "5", "APPLICATION": "Y"})))
	if got["5"].(map[string]any)["public_id"] == own["public_id"] {
		t.Fatal("public.get with USER_ID ignores APPLICATION=Y")
	}
	// Only "Y" switches; without an application there is no such channel.
	got = roundTrip(t, must(f.svc.publicList(ctx, f.caller, rest.Params{"USERS": []any{"5"}, "APPLICATION": "y"})))
	if got["5"].(map[string]any)["public_id"] != own["public_id"] {
		t.Fatal(`APPLICATION=y is not "Y"`)
	}
	noApp := f.caller
	noApp.ClientID, noApp.AppID = "", 0
	if _, err := f.svc.publicList(ctx, noApp, rest.Params{"USERS": []any{"5"}, "APPLICATION": "Y"}); !isCode(err, "WRONG_AUTH_TYPE", 400) {
		t.Fatalf("APPLICATION=Y without an application: %v", err)
	}
}

func TestUserConfigGet(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	if _, err := f.svc.userConfigGet(ctx, f.caller, nil); !isCode(err, "WRONG_AUTH_TYPE", 403) {
		t.Fatalf("OAuth caller: %v", err)
	}
	hook := f.caller
	hook.Kind = rest.KindWebhook
	res, err := f.svc.userConfigGet(ctx, hook, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := roundTrip(t, res)
	app := roundTrip(t, must(f.svc.configGet(ctx, f.caller, nil)))
	own := cfg["channels"].(map[string]any)["private"].(map[string]any)
	if own["id"] == app["channels"].(map[string]any)["private"].(map[string]any)["id"] {
		t.Fatal("the user's own channel is the application's")
	}
	// Its public id is the one publicChannels hands to other clients.
	if !strings.HasPrefix(own["public_id"].(string), cfg["publicChannels"].(map[string]any)["5"].(map[string]any)["public_id"].(string)+".") {
		t.Fatalf("own channel %v vs publicChannels %v", own, cfg["publicChannels"])
	}
}

func TestPublicGet(t *testing.T) {
	f := newFixture(t, 4)
	for _, p := range []rest.Params{nil, {"USER_ID": "5"}, {"USERS": []any{"5"}}} {
		res, err := f.svc.publicGet(context.Background(), f.caller, p)
		if err != nil {
			t.Fatal(err)
		}
		if got := roundTrip(t, res); len(got) != 1 || got["5"] == nil {
			t.Fatalf("%v: %v", p, got)
		}
	}
}

// pull.config.get in version 5: the token names the user's own channels,
// not the application's.
func TestUserConfigGetVersion5(t *testing.T) {
	f := newFixture(t, 5)
	ctx := context.Background()
	hook := f.caller
	hook.Kind = rest.KindWebhook
	cfg := roundTrip(t, must(f.svc.userConfigGet(ctx, hook, nil)))
	claims, err := token.Verify(cfg["jwt"].(string), []byte("SECRET"), f.now)
	if err != nil {
		t.Fatal(err)
	}
	chans := cfg["channels"].(map[string]any)
	elems, err := channel.ParseList(chans["private"].(map[string]any)["id"].(string)+"/"+chans["shared"].(map[string]any)["id"].(string),
		channel.ListOptions{Signer: f.signer, RequireSignature: true})
	if err != nil {
		t.Fatal(err)
	}
	if claims.User != 5 || len(claims.Channels) != 3 || claims.Channels[0] != elems[1].ID || claims.Channels[1] != elems[0].ID ||
		claims.Channels[2] != elems[0].Public {
		t.Fatalf("claims %+v", claims)
	}
	app := roundTrip(t, must(f.svc.configGet(ctx, f.caller, nil)))
	appClaims, _ := token.Verify(app["jwt"].(string), []byte("SECRET"), f.now)
	if appClaims.Channels[1] == claims.Channels[1] {
		t.Fatal("the user's token names the application's private channel")
	}
}
