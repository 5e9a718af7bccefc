package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/redistest"
	"github.com/pushpull/pushpull/internal/server"
	"github.com/pushpull/pushpull/internal/tenant"
)

const cliClientID = "0123456789abcdef0123456789abcdef"

// TestTenantAddListRemove: add prints the key derived from the server's key
// in the data dir, list shows the tenant (with --keys its key), remove
// removes it and a second remove fails.
func TestTenantAddListRemove(t *testing.T) {
	e := newOpEnv(t)
	e.env["PUSHPULL_SIGNATURE_KEY"] = "operator-test-signature-key"
	var added tenantJSON
	e.ok(&added, "tenant", "add", "--client-id", cliClientID, "--host", "Push.Example.com", "--json")
	want := tenant.DeriveKey([]byte("operator-test-signature-key"), cliClientID, "push.example.com")
	if added.SecurityKey != want || added.Host != "push.example.com" || added.Origin != "operator" {
		t.Fatalf("tenant add = %+v, want key %s", added, want)
	}
	var again tenantJSON
	e.ok(&again, "tenant", "add", "--client-id", cliClientID, "--host", "push.example.com", "--json")
	if again.SecurityKey != want || !again.CreatedAt.Equal(added.CreatedAt) {
		t.Fatalf("adding again = %+v, want the same key and creation time", again)
	}

	var list struct{ Tenants []tenantJSON }
	e.ok(&list, "tenant", "list", "--json")
	if len(list.Tenants) != 1 || list.Tenants[0].ClientID != cliClientID || list.Tenants[0].SecurityKey != "" {
		t.Fatalf("tenant list = %+v", list.Tenants)
	}
	e.ok(&list, "tenant", "list", "--json", "--keys")
	if len(list.Tenants) != 1 || list.Tenants[0].SecurityKey != want {
		t.Fatalf("tenant list --keys = %+v", list.Tenants)
	}
	if text := e.ok(nil, "tenant", "list"); !strings.Contains(text, cliClientID) || strings.Contains(text, want) {
		t.Fatalf("tenant list text:\n%s", text)
	}
	if got, err := e.open().Tenant(t.Context(), cliClientID, "push.example.com"); err != nil || got.Origin != "operator" {
		t.Fatalf("registry: %+v %v", got, err)
	}

	e.ok(nil, "tenant", "remove", "--client-id", cliClientID, "--host", "push.example.com")
	if code, _, stderr := e.run("tenant", "remove", "--client-id", cliClientID, "--host", "push.example.com"); code != exitFailure || !strings.Contains(stderr, "no tenant") {
		t.Fatalf("second remove: exit %d, %s", code, stderr)
	}
	e.ok(&list, "tenant", "list", "--json")
	if len(list.Tenants) != 0 {
		t.Fatalf("tenant list after remove = %+v", list.Tenants)
	}
}

func TestTenantAddUsesTheDataDirKey(t *testing.T) {
	e := newOpEnv(t)
	var added tenantJSON
	e.ok(&added, "tenant", "add", "--client-id", cliClientID, "--host", "push.example.com", "--json")
	key, err := os.ReadFile(filepath.Join(e.dataDir, "signature.key"))
	if err != nil {
		t.Fatalf("the key serve will use was not kept: %v", err)
	}
	if want := tenant.DeriveKey([]byte(strings.TrimSpace(string(key))), cliClientID, "push.example.com"); added.SecurityKey != want {
		t.Fatalf("key %s, want %s (derived from the data dir's key)", added.SecurityKey, want)
	}
}

func TestTenantBadFlags(t *testing.T) {
	e := newOpEnv(t)
	for _, args := range [][]string{
		{"tenant", "add", "--host", "push.example.com"},
		{"tenant", "add", "--client-id", "short", "--host", "push.example.com"},
		{"tenant", "add", "--client-id", cliClientID},
		{"tenant", "add", "--client-id", cliClientID, "--host", "a host"},
		{"tenant", "remove", "--client-id", cliClientID},
		{"tenant", "frobnicate"},
	} {
		if code, _, _ := e.run(args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "registry.db")); err == nil {
		var list struct{ Tenants []tenantJSON }
		e.ok(&list, "tenant", "list", "--json")
		if len(list.Tenants) != 0 {
			t.Fatalf("refused commands added %+v", list.Tenants)
		}
	}
}

// TestTenantOnRedis: with --redis the tenant is in the cluster's registry
// and its key is derived from the cluster's key in Redis (generated there
// if no node has started yet), the one every node signs with.
func TestTenantOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	e := newOpEnv(t)
	var added tenantJSON
	e.ok(&added, "tenant", "add", "--client-id", cliClientID, "--host", "push.example.com", "--redis", srv.URL(), "--json")
	cfg := config.Default()
	cfg.Redis = srv.URL()
	key, err := server.SignatureKey(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if want := tenant.DeriveKey(key, cliClientID, "push.example.com"); added.SecurityKey != want {
		t.Fatalf("key %s, want %s (from the cluster's key)", added.SecurityKey, want)
	}
	var list struct{ Tenants []tenantJSON }
	e.ok(&list, "tenant", "list", "--json", "--redis", srv.URL())
	if len(list.Tenants) != 1 || list.Tenants[0].ClientID != cliClientID {
		t.Fatalf("tenant list on redis = %+v", list.Tenants)
	}
	e.ok(&list, "tenant", "list", "--json")
	if len(list.Tenants) != 0 {
		t.Fatalf("the data dir's registry lists %+v", list.Tenants)
	}
}

// TestSharedModeOperatorFlow runs what an operator of a shared server does
// against a running one: tenant add (while the server runs), a portal's
// subscriber with the printed key, publish --client-id, and tenant remove,
// which the server follows by closing the portal's connection with 4036.
func TestSharedModeOperatorFlow(t *testing.T) {
	e := newOpEnv(t)
	cfg := config.Default()
	cfg.DataDir = e.dataDir
	cfg.Mode = config.ModeShared
	cfg.InternalAddr = config.SameAddr
	cfg.TenantReload = 20 * time.Millisecond
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
	defer func() { cancel(); <-done }()
	base := "http://" + ln.Addr().String()

	var added tenantJSON
	e.ok(&added, "tenant", "add", "--client-id", cliClientID, "--host", "127.0.0.1", "--json")
	signer := channel.NewSigner([]byte(added.SecurityKey), channel.SHA1)
	ch := "00112233445566778899aabbccddeeff"
	id, _ := channel.ParseID(ch)
	conn, _, _, err := ws.Dial(t.Context(), "ws://"+ln.Addr().String()+"/sub/?CHANNEL_ID="+url.QueryEscape(signer.SignChannel(id))+"&clientId="+cliClientID)
	if err != nil {
		t.Fatalf("the portal's subscriber: %v", err)
	}
	defer conn.Close()

	if code, _, stderr := e.run("publish", "--url", base, ch, `{"module_id":"t","command":"c","params":{}}`); code != exitFailure || !strings.Contains(stderr, "4025") {
		t.Fatalf("publish without --client-id: exit %d, %s", code, stderr)
	}
	e.env["PUSHPULL_TENANT_KEY"] = added.SecurityKey
	e.ok(nil, "publish", "--url", base, "--client-id", cliClientID, ch, `{"module_id":"t","command":"c","params":{}}`)
	data, err := wsutil.ReadServerText(conn)
	if err != nil || !strings.Contains(string(data), `"command":"c"`) {
		t.Fatalf("the portal's subscriber got %q, %v", data, err)
	}

	e.ok(nil, "tenant", "remove", "--client-id", cliClientID, "--host", "127.0.0.1")
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	_, err = wsutil.ReadServerText(conn)
	var closed wsutil.ClosedError
	if !errors.As(err, &closed) || closed.Code != 4036 {
		t.Fatalf("after tenant remove the connection ended with %v, want a 4036 close", err)
	}
}
