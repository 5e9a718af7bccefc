package tenant

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/store/sqlite"
)

const (
	global = "the-server-signature-key-0123456789"
	idA    = "0123456789abcdefghijklmnopqrstuv"
)

func TestDeriveKeyIsTheCloudServersKey(t *testing.T) {
	m := hmac.New(sha256.New, []byte(global))
	m.Write([]byte("push" + idA + "push.example.com" + "server"))
	if got, want := DeriveKey([]byte(global), idA, "push.example.com"), hex.EncodeToString(m.Sum(nil)); got != want {
		t.Fatalf("DeriveKey = %s, want %s", got, want)
	}
	if DeriveKey([]byte(global), idA, "a.example.com") == DeriveKey([]byte(global), idA, "b.example.com") {
		t.Fatal("two hosts of one client id share a key")
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{{idA, true}, {idA[:31], false}, {idA + "w", false}, {"0123456789ABCDEFghijklmnopqrstuv", false}, {"0123456789abcdef-hijklmnopqrstuv", false}} {
		if ValidClientID(tc.s) != tc.want {
			t.Errorf("ValidClientID(%q) = %v", tc.s, !tc.want)
		}
	}
	for _, tc := range []struct {
		s    string
		want bool
	}{{"push.example.com", true}, {"127.0.0.1", true}, {"a", false}, {"x23456789012345678901234567890123", false}, {"Push.example.com", false}, {"a b", false}} {
		if ValidHost(tc.s) != tc.want {
			t.Errorf("ValidHost(%q) = %v", tc.s, !tc.want)
		}
	}
	for in, want := range map[string]string{"Push.Example.com:443": "push.example.com", "[::1]:80": "::1", "host": "host"} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScopeSeparatesTenantsAndReverses(t *testing.T) {
	a := newTenant([]byte(global), channel.SHA1, idA, "a.example.com")
	b := newTenant([]byte(global), channel.SHA1, idA, "b.example.com")
	var id channel.ID
	copy(id[:], "0123456789abcdef")
	if a.Scope(id) == b.Scope(id) || a.Scope(id) == id {
		t.Fatal("two tenants' channels share an id")
	}
	if a.Scope(a.Scope(id)) != id {
		t.Fatal("Scope is not its own inverse")
	}
	if !a.Scoped() {
		t.Fatal("a registered tenant is not scoped")
	}
}

func newDirectory(t *testing.T, path string) *Directory {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path, "portal.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	d := NewDirectory(st, Options{GlobalKey: []byte(global), Algo: channel.SHA1}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := d.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDirectoriesOnOneRegistry: what one directory adds, another on the
// same registry serves at once; what one removes, the other stops serving
// at its next reload, and says so.
func TestDirectoriesOnOneRegistry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	one, two := newDirectory(t, path), newDirectory(t, path)
	removed := make(chan *Tenant, 1)
	two.OnRemove(func(tn *Tenant) { removed <- tn })
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); two.Watch(ctx, 10*time.Millisecond) }()
	defer func() { cancel(); wg.Wait() }()

	added, err := one.Add(t.Context(), idA, "push.example.com", OriginOperator)
	if err != nil {
		t.Fatal(err)
	}
	got, err := two.Lookup(t.Context(), idA, "push.example.com")
	if err != nil || got.Key != added.Key {
		t.Fatalf("other directory: %v %v", got, err)
	}
	if _, err := two.Lookup(t.Context(), idA, "other.example.com"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("lookup of another host: %v", err)
	}
	// A pair looked up before it was added elsewhere is served once the
	// other directory reloads.
	if _, err := one.Add(t.Context(), idA, "other.example.com", OriginOperator); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, two, idA, "other.example.com")
	if err := one.Remove(t.Context(), idA, "push.example.com"); err != nil {
		t.Fatal(err)
	}
	select {
	case tn := <-removed:
		if tn != got {
			t.Fatalf("OnRemove got %+v", tn)
		}
	case <-time.After(time.Minute):
		t.Fatal("the other directory never noticed the removal")
	}
	if _, err := two.Lookup(t.Context(), idA, "push.example.com"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("lookup after removal: %v", err)
	}
	if err := one.Remove(t.Context(), idA, "push.example.com"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("second removal: %v", err)
	}
	if _, err := one.Add(t.Context(), "short", "push.example.com", OriginOperator); !errors.Is(err, ErrInvalid) {
		t.Fatalf("adding a bad client id: %v", err)
	}
}

func TestHomeTenant(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "r.db"), "portal.test")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	signer := channel.NewSigner([]byte(global), channel.SHA1)
	d := NewDirectory(st, Options{GlobalKey: []byte(global), Algo: channel.SHA1, HomeClientID: idA, HomeSigner: signer}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := d.Add(t.Context(), idA, "any.example.com", OriginRegistered); !errors.Is(err, ErrInvalid) {
		t.Fatalf("registering the home portal's client id: %v, want ErrInvalid", err)
	}
	for _, host := range []string{"any.example.com", "localhost"} {
		h, err := d.Lookup(t.Context(), idA, host)
		if err != nil || !h.Home || h.Signer() != signer || h.Scoped() {
			t.Fatalf("home on %s: %+v %v", host, h, err)
		}
	}
}

func TestURLVerifier(t *testing.T) {
	answer := ""
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	defer srv.Close()
	v := URL{Endpoint: srv.URL}
	query := "BX_LICENCE=" + idA + "&BX_TYPE=CP"
	for _, tc := range []struct {
		answer  string
		status  int
		id      string
		refusal string
		fails   bool
	}{
		{`{"status":"ok","result":{"LICENSE_KEY_HEAD":"` + idA + `"}}`, 200, idA, "", false},
		{`{"status":"ok","result":{}}`, 200, idA, "", false},
		{`{"status":"ok","result":{"LICENSE_KEY_HEAD":"nope"}}`, 200, "", "", true},
		{`{"status":"error","text":"LICENSE_DEMO"}`, 200, "", LicenseDemo, false},
		{`{"status":"error"}`, 200, "", "", true},
		{`not json`, 200, "", "", true},
		{`{"status":"ok","result":{}}`, 500, "", "", true},
	} {
		answer, status = tc.answer, tc.status
		id, err := v.Verify(t.Context(), query)
		var r *Refusal
		switch {
		case tc.refusal != "":
			if !errors.As(err, &r) || r.Code != tc.refusal {
				t.Errorf("%s: %v, want refusal %s", tc.answer, err, tc.refusal)
			}
		case tc.fails:
			if err == nil || errors.As(err, &r) {
				t.Errorf("%s (%d): %q %v, want a failure", tc.answer, tc.status, id, err)
			}
		case err != nil || id != tc.id:
			t.Errorf("%s: %q %v, want %q", tc.answer, id, err, tc.id)
		}
	}
	// A query that claims no client id never reaches the endpoint.
	answer = `{"status":"ok","result":{"LICENSE_KEY_HEAD":"` + idA + `"}}`
	var r *Refusal
	if _, err := v.Verify(t.Context(), "BX_TYPE=CP"); !errors.As(err, &r) || r.Code != WrongRequest {
		t.Fatalf("query without BX_LICENCE: %v", err)
	}
}

func waitLookup(t *testing.T, d *Directory, clientID, host string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := d.Lookup(t.Context(), clientID, host); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s@%s never served", clientID, host)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
