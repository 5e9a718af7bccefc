package server

import (
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/config"
	"github.com/pushpull/pushpull/internal/testkit"
	"github.com/pushpull/pushpull/internal/wire"
)

func start(t *testing.T, cfg config.Config) *testkit.Server {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith is start with a look at the server before it serves.
func startWith(t *testing.T, cfg config.Config, prepare func(*Server)) *testkit.Server {
	t.Helper()
	return startOn(t, testkit.Listen(t), cfg, testkit.Logger(), prepare)
}

// startOn is startWith on a listener of the caller's, logging to log.
func startOn(t *testing.T, ln net.Listener, cfg config.Config, log *slog.Logger, prepare func(*Server)) *testkit.Server {
	t.Helper()
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(s)
	}
	return testkit.ServeOn(t, s, ln, !cfg.TrustedOnAddr())
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHistorySurvivesGracefulRestart(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECURITYKEY123456"
	ch, _ := channel.ParseID("fb9f7e13dc3d595c5aefe1a0216c27a2")
	signed := channel.NewSigner([]byte(cfg.SignatureKey), channel.SHA1).SignChannel(ch)

	r := start(t, cfg)
	if code, body := get(t, r.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	resp, err := http.Post(r.Internal+"/pub/?CHANNEL_ID="+ch.String(), "application/json", strings.NewReader(`{"before":"restart"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("publish: %v %v", resp, err)
	}
	resp.Body.Close()
	r.Stop(t)

	r2 := start(t, cfg)
	code, body := get(t, r2.URL+"/sub/?CHANNEL_ID="+url.QueryEscape(signed)+"&mid=00000000000000000000000000")
	frames, err := wire.ParseTextFrames([]byte(body))
	if code != 200 || err != nil || len(frames) != 1 || string(frames[0].Text) != `{"before":"restart"}` {
		t.Fatalf("after restart: %d %q %v", code, body, err)
	}
}

func TestGeneratedSignatureKeyIsKept(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	log := slog.New(slog.DiscardHandler)
	k1, err := signatureKey(cfg, log)
	if err != nil || len(k1) < 32 {
		t.Fatalf("generated key %q: %v", k1, err)
	}
	k2, err := signatureKey(cfg, log)
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("second start got %q, want %q", k2, k1)
	}
	info, err := os.Stat(filepath.Join(cfg.DataDir, signatureKeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", info, err)
	}
	cfg.SignatureKey = "explicit"
	if k, _ := signatureKey(cfg, log); string(k) != "explicit" {
		t.Fatalf("explicit key ignored: %q", k)
	}
}

// TestTrustedRoutesOnlyOnTheInternalListener checks the default layout:
// nothing a backend alone may do is reachable on the public listener.
func TestTrustedRoutesOnlyOnTheInternalListener(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.SignatureKey = "SECRET"
	r := start(t, cfg)
	internal := r.Internal
	ch := "fb9f7e13dc3d595c5aefe1a0216c27a2"

	post := func(base string) int {
		resp, err := http.Post(base+"/pub/?CHANNEL_ID="+ch, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(r.URL); code != http.StatusNotFound {
		t.Fatalf("/pub/ on the public listener: %d, want 404", code)
	}
	if code := post(internal); code != http.StatusOK {
		t.Fatalf("/pub/ on the internal listener: %d", code)
	}
	if code, _ := get(t, r.URL+"/server-stat/"); code != http.StatusNotFound {
		t.Fatalf("/server-stat/ on the public listener: %d", code)
	}
	if code, _ := get(t, internal+"/server-stat/"); code != http.StatusOK {
		t.Fatalf("/server-stat/ on the internal listener: %d", code)
	}
	// So is the backend JSON-RPC endpoint (signed, but still the backend's).
	api := func(base string) int {
		body := `{"jsonrpc":"2.0","method":"getUsersLastSeen","params":{"userList":[1]}}`
		sig := hex.EncodeToString(channel.NewSigner([]byte("SECRET"), channel.SHA1).Sign([]byte(body)))
		resp, err := http.Post(base+"/bitrix/api/?signature="+sig, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := api(r.URL); code != http.StatusNotFound {
		t.Fatalf("/bitrix/api/ on the public listener: %d, want 404", code)
	}
	if code := api(internal); code != http.StatusOK {
		t.Fatalf("/bitrix/api/ on the internal listener: %d", code)
	}
	// Subscribing stays public.
	signed := channel.NewSigner([]byte("SECRET"), channel.SHA1).SignChannel(mustParse(t, ch))
	if code, _ := get(t, r.URL+"/sub/?CHANNEL_ID="+url.QueryEscape(signed)+"&mid=00000000000000000000000000"); code != http.StatusOK {
		t.Fatalf("replay on the public listener: %d", code)
	}
	if code, _ := get(t, internal+"/sub/?CHANNEL_ID="+url.QueryEscape(signed)); code != http.StatusNotFound {
		t.Fatalf("/sub/ on the internal listener: %d", code)
	}
}

// TestSameAddrServesEverythingOnOneListener is the local-development
// layout: --internal-addr same.
func TestSameAddrServesEverythingOnOneListener(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.InternalAddr = config.SameAddr
	r := start(t, cfg)
	resp, err := http.Post(r.URL+"/pub/?CHANNEL_ID=fb9f7e13dc3d595c5aefe1a0216c27a2", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/pub/ with --internal-addr same: %d", resp.StatusCode)
	}
	if code, _ := get(t, r.URL+"/server-stat/"); code != http.StatusOK {
		t.Fatalf("/server-stat/ with --internal-addr same: %d", code)
	}
}

func mustParse(t *testing.T, s string) channel.ID {
	t.Helper()
	id, err := channel.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
