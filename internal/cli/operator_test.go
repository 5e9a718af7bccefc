package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/auth"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/redistest"
	"github.com/pushpull/pushpull/internal/rest"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/store/sqlite"
)

// opEnv is a data dir and public URL given through the environment, as an
// operator next to a running server would have them.
type opEnv struct {
	t       *testing.T
	dataDir string
	env     map[string]string
}

func newOpEnv(t *testing.T) *opEnv {
	t.Helper()
	dir := t.TempDir()
	return &opEnv{t: t, dataDir: dir, env: map[string]string{
		"PUSHPULL_DATA_DIR":   dir,
		"PUSHPULL_PUBLIC_URL": "https://push.example.com",
	}}
}

// run runs Main and returns its exit code, stdout and stderr.
func (e *opEnv) run(args ...string) (int, string, string) {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(e.t.Context(), args, &stdout, &stderr, func(k string) string { return e.env[k] })
	return code, stdout.String(), stderr.String()
}

// ok runs args, wants exit 0 and decodes the --json output into v.
func (e *opEnv) ok(v any, args ...string) string {
	e.t.Helper()
	code, stdout, stderr := e.run(args...)
	if code != exitOK {
		e.t.Fatalf("%v: exit %d, stderr:\n%s", args, code, stderr)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(stdout), v); err != nil {
			e.t.Fatalf("%v: output is not JSON: %v\n%s", args, err, stdout)
		}
		if strings.Count(strings.TrimSpace(stdout), "\n") != 0 {
			e.t.Errorf("%v: want one JSON line, got:\n%s", args, stdout)
		}
	}
	return stdout
}

// open opens the registry the commands use, after they ran.
func (e *opEnv) open() store.Store {
	e.t.Helper()
	st, err := sqlite.Open(e.t.Context(), filepath.Join(e.dataDir, "registry.db"), "push.example.com")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = st.Close() })
	return st
}

func (e *opEnv) createApp() appJSON {
	e.t.Helper()
	var a appJSON
	e.ok(&a, "app", "create", "--name", "sync", "--json")
	return a
}

func TestAppCreateAndList(t *testing.T) {
	e := newOpEnv(t)
	var a appJSON
	e.ok(&a, "app", "create", "--name", "CRM sync", "--scope", "pull,im", "--json")
	if !strings.HasPrefix(a.ClientID, "local.") || len(a.ClientSecret) != 50 || a.Name != "CRM sync" {
		t.Errorf("app create = %+v", a)
	}
	if strings.Join(a.Scopes, ",") != "pull,im" {
		t.Errorf("scopes = %v, want pull,im", a.Scopes)
	}
	b := e.createApp()
	if strings.Join(b.Scopes, ",") != "pull" {
		t.Errorf("default scopes = %v, want pull", b.Scopes)
	}

	var list struct{ Apps []appJSON }
	e.ok(&list, "app", "list", "--json")
	// The registry keeps only the secret's hash: app list cannot show it.
	if len(list.Apps) != 2 || list.Apps[0].ClientID != a.ClientID || list.Apps[0].ClientSecret != "" ||
		list.Apps[1].ClientID != b.ClientID {
		t.Errorf("app list = %+v, want %s then %s", list.Apps, a.ClientID, b.ClientID)
	}
	text := e.ok(nil, "app", "list")
	if !strings.Contains(text, a.ClientID) || !strings.Contains(text, "CRM sync") || strings.Contains(text, a.ClientSecret) {
		t.Errorf("app list text lacks the app:\n%s", text)
	}

	// The --data-dir flag wins over the environment.
	other := t.TempDir()
	e.ok(&list, "app", "list", "--json", "--data-dir", other)
	if len(list.Apps) != 0 {
		t.Errorf("app list in an empty data dir = %+v", list.Apps)
	}
}

func TestUserAdd(t *testing.T) {
	e := newOpEnv(t)
	var u struct {
		ID            int64
		Active, Admin bool
	}
	e.ok(&u, "user", "add", "--id", "7", "--admin", "--json")
	if u.ID != 7 || !u.Active || !u.Admin {
		t.Errorf("user add = %+v", u)
	}
	e.ok(&u, "user", "add", "--id", "7", "--inactive", "--json") // an update
	if u.ID != 7 || u.Active || u.Admin {
		t.Errorf("user add again = %+v", u)
	}
	got, err := e.open().User(t.Context(), 1, 7)
	if err != nil || got.Active || got.Admin {
		t.Errorf("stored user = %+v, %v", got, err)
	}
}

func TestTokenIssueAuthenticates(t *testing.T) {
	e := newOpEnv(t)
	a := e.createApp()
	e.ok(nil, "user", "add", "--id", "5")
	var tr auth.TokenResponse
	e.ok(&tr, "token", "issue", "--app", a.ClientID, "--user", "5", "--json")
	if tr.AccessToken == "" || tr.RefreshToken == "" || tr.UserID != 5 || tr.Expires <= time.Now().Unix() {
		t.Fatalf("token issue = %+v", tr)
	}
	if tr.ClientEndpoint != "https://push.example.com/rest/" {
		t.Errorf("client_endpoint = %q", tr.ClientEndpoint)
	}

	st := e.open()
	svc := auth.New(st, auth.Options{BaseURL: "https://push.example.com"})
	caller, err := svc.Authenticate(t.Context(), rest.Credential{AccessToken: tr.AccessToken})
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if caller.UserID != 5 || caller.ClientID != a.ClientID {
		t.Errorf("caller = %+v", caller)
	}

	text := e.ok(nil, "token", "issue", "--app", a.ClientID, "--user", "5")
	for _, want := range []string{"access_token:", "refresh_token:", "expires:"} {
		if !strings.Contains(text, want) {
			t.Errorf("token issue text lacks %q:\n%s", want, text)
		}
	}

	e.ok(nil, "token", "revoke", tr.AccessToken)
	if _, err := svc.Authenticate(t.Context(), rest.Credential{AccessToken: tr.AccessToken}); err == nil {
		t.Error("a revoked token still authenticates")
	}
	if code, _, stderr := e.run("token", "revoke", "nosuchtoken"); code != exitFailure ||
		!strings.Contains(stderr, "unknown access token") {
		t.Errorf("revoke unknown: exit %d, stderr %q", code, stderr)
	}
}

func TestTokenCode(t *testing.T) {
	e := newOpEnv(t)
	a := e.createApp()
	e.ok(nil, "user", "add", "--id", "5")
	var c struct {
		Code      string
		Expires   int64
		ExpiresIn int64 `json:"expires_in"`
	}
	e.ok(&c, "token", "code", "--app", a.ClientID, "--user", "5", "--json")
	if c.Code == "" || c.ExpiresIn < 29 || c.ExpiresIn > 30 {
		t.Fatalf("token code = %+v", c)
	}
	used, err := e.open().UseAuthCode(t.Context(), c.Code, a.ID, time.Now())
	if err != nil || used.UserID != 5 {
		t.Errorf("UseAuthCode = %+v, %v", used, err)
	}
}

func TestWebhookCreate(t *testing.T) {
	e := newOpEnv(t)
	e.ok(nil, "user", "add", "--id", "3")
	var wh struct {
		URL, Secret string
		UserID      int64 `json:"user_id"`
	}
	e.ok(&wh, "webhook", "create", "--user", "3", "--json")
	if len(wh.Secret) != 16 || wh.URL != "https://push.example.com/rest/3/"+wh.Secret+"/" {
		t.Fatalf("webhook create = %+v", wh)
	}
	svc := auth.New(e.open(), auth.Options{})
	caller, err := svc.Authenticate(t.Context(), rest.Credential{WebhookUser: 3, WebhookSecret: wh.Secret})
	if err != nil || caller.UserID != 3 {
		t.Errorf("Authenticate webhook = %+v, %v", caller, err)
	}
	text := e.ok(nil, "webhook", "create", "--user", "3")
	if !strings.Contains(text, "https://push.example.com/rest/3/") {
		t.Errorf("webhook create text:\n%s", text)
	}
}

// TestOperatorsUseTheServersPublicURL: with only the data dir, the operator
// commands print the URL the server started with, not localhost:8080.
func TestOperatorsUseTheServersPublicURL(t *testing.T) {
	e := newOpEnv(t)
	delete(e.env, "PUSHPULL_PUBLIC_URL")
	cfg := config.Default()
	cfg.DataDir = e.dataDir
	cfg.PublicURL = "https://rt.example.org"
	cfg.InternalAddr = "127.0.0.1:0"
	s, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}

	e.ok(nil, "user", "add", "--id", "3")
	var wh struct{ URL, Secret string }
	e.ok(&wh, "webhook", "create", "--user", "3", "--json")
	if wh.URL != "https://rt.example.org/rest/3/"+wh.Secret+"/" {
		t.Fatalf("webhook URL %q, want the server's public URL", wh.URL)
	}
	// An explicit --public-url still wins.
	e.ok(&wh, "webhook", "create", "--user", "3", "--json", "--public-url", "https://other.example.org")
	if !strings.HasPrefix(wh.URL, "https://other.example.org/rest/3/") {
		t.Fatalf("webhook URL %q with --public-url", wh.URL)
	}
}

func TestOperatorErrors(t *testing.T) {
	e := newOpEnv(t)
	a := e.createApp()
	e.ok(nil, "user", "add", "--id", "5")
	e.ok(nil, "user", "add", "--id", "6", "--inactive")
	tests := []struct {
		args       []string
		wantCode   int
		wantStderr string
	}{
		{[]string{"token", "issue", "--app", "local.nope", "--user", "5"}, exitFailure, `unknown application "local.nope"`},
		{[]string{"token", "code", "--app", "local.nope", "--user", "5"}, exitFailure, `unknown application "local.nope"`},
		{[]string{"webhook", "create", "--user", "5", "--app", "local.nope"}, exitFailure, `unknown application "local.nope"`},
		{[]string{"token", "issue", "--app", a.ClientID, "--user", "9"}, exitFailure, "user 9 does not exist"},
		{[]string{"token", "issue", "--app", a.ClientID, "--user", "6"}, exitFailure, "user 6 is inactive"},
		{[]string{"webhook", "create", "--user", "9"}, exitFailure, "user 9 does not exist"},
		{[]string{"app", "create"}, exitUsage, "--name is required"},
		{[]string{"app", "create", "--name", "x", "--scope", ","}, exitUsage, "--scope"},
		{[]string{"app", "create", "--bogus"}, exitUsage, "unknown flag --bogus"},
		{[]string{"app", "list", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"app"}, exitUsage, "missing subcommand"},
		{[]string{"app", "delete"}, exitUsage, `unknown subcommand "delete"`},
		{[]string{"user", "add"}, exitUsage, "--id is required"},
		{[]string{"token", "issue", "--user", "5"}, exitUsage, "--app is required"},
		{[]string{"token", "issue", "--app", a.ClientID}, exitUsage, "--user is required"},
		{[]string{"token", "revoke"}, exitUsage, "want one access token"},
		{[]string{"token", "revoke", "abc", "--json"}, exitUsage, "flags go before the arguments"},
		{[]string{"webhook", "create"}, exitUsage, "--user is required"},
		{[]string{"app", "list", "--public-url", "push.example.com"}, exitUsage, "public-url"},
	}
	for _, tt := range tests {
		code, stdout, stderr := e.run(tt.args...)
		if code != tt.wantCode || !strings.Contains(stderr, tt.wantStderr) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tt.args, code, stderr, tt.wantCode, tt.wantStderr)
		}
		if stdout != "" {
			t.Errorf("%v: stdout not empty:\n%s", tt.args, stdout)
		}
	}
}

func TestOperatorHelp(t *testing.T) {
	e := newOpEnv(t)
	for _, args := range [][]string{
		{"app", "create", "--help"}, {"app", "list", "--help"}, {"user", "add", "--help"},
		{"token", "issue", "--help"}, {"token", "code", "--help"}, {"token", "revoke", "--help"},
		{"webhook", "create", "--help"}, {"help", "token"},
	} {
		code, stdout, _ := e.run(args...)
		if code != exitOK || !strings.Contains(stdout, "Examples:\n  pushpull ") {
			t.Errorf("%v: exit %d, output:\n%s", args, code, stdout)
		}
		if args[0] != "help" && !strings.Contains(stdout, "Usage: pushpull "+args[0]+" "+args[1]) {
			t.Errorf("%v: no usage line:\n%s", args, stdout)
		}
	}
}

// TestOperatorOnRedis: with --redis (or PUSHPULL_REDIS) the commands act on
// the cluster's registry, which every node reads, not on a registry.db.
func TestOperatorOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	e := newOpEnv(t)
	var a appJSON
	e.ok(&a, "app", "create", "--name", "on redis", "--redis", srv.URL(), "--json")
	e.env["PUSHPULL_REDIS"] = srv.URL()
	var list struct{ Apps []appJSON }
	e.ok(&list, "app", "list", "--json")
	if len(list.Apps) != 1 || list.Apps[0].ClientID != a.ClientID {
		t.Fatalf("app list through PUSHPULL_REDIS = %+v, want %s", list.Apps, a.ClientID)
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "registry.db")); !os.IsNotExist(err) {
		t.Fatalf("a registry.db was written in cluster mode: %v", err)
	}
	delete(e.env, "PUSHPULL_REDIS")
	e.ok(&list, "app", "list", "--json")
	if len(list.Apps) != 0 {
		t.Fatalf("the data dir's own registry lists %+v", list.Apps)
	}
}
