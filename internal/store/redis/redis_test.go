package redis_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/redisconn"
	"github.com/pushpull/pushpull/internal/redistest"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/store/redis"
	"github.com/pushpull/pushpull/internal/store/storetest"
)

// redisURL is the one redis-server this package's tests share; each store
// gets its own random prefix, which isolates the parallel tests.
var redisURL string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "redisstore-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := redistest.New(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Stop()
	redisURL = srv.URL()
	return m.Run()
}

// client opens a client of its own, as another pushpull process would.
func client(t *testing.T) rueidis.Client {
	t.Helper()
	c, err := redisconn.Open(t.Context(), redisURL)
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func newPrefix(t *testing.T) string {
	t.Helper()
	id, err := store.NewChannelID()
	if err != nil {
		t.Fatal(err)
	}
	return "test-" + id
}

func open(t *testing.T, c rueidis.Client, prefix string) *redis.Store {
	t.Helper()
	s, err := redis.Open(t.Context(), c, prefix, "push.example.com")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestRedis(t *testing.T) {
	c := client(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, c, newPrefix(t))
	})
}

// twoNodes returns two stores on one prefix through separate clients: two
// pushpull nodes sharing a Redis.
func twoNodes(t *testing.T) (*redis.Store, *redis.Store) {
	prefix := newPrefix(t)
	return open(t, client(t), prefix), open(t, client(t), prefix)
}

func TestTwoNodesRotateChannelOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := twoNodes(t)
	p, err := a.DefaultPortal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := store.ChannelKey{PortalID: p.ID, UserID: 1, Type: store.TypePrivate}
	epoch := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	old, _, err := a.ChannelFor(ctx, key, epoch, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := old.End.Add(time.Second)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		got      []store.Channel
		replaced int
	)
	for i := range 20 {
		node := a
		if i%2 == 1 {
			node = b
		}
		wg.Go(func() {
			c, r, err := node.ChannelFor(ctx, key, now, time.Hour)
			if err != nil {
				t.Errorf("ChannelFor: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			got = append(got, c)
			if r != nil {
				replaced++
				if r.PrivateID != old.PrivateID {
					t.Errorf("replaced = %+v, want %+v", *r, old)
				}
			}
		})
	}
	wg.Wait()
	if replaced != 1 {
		t.Errorf("%d callers replaced the channel, want 1", replaced)
	}
	for _, c := range got {
		if c.PrivateID != got[0].PrivateID || c.PublicID != got[0].PublicID || !c.End.Equal(got[0].End) {
			t.Errorf("nodes disagree: %+v vs %+v", c, got[0])
		}
	}
	if len(got) > 0 && got[0].PrivateID == old.PrivateID {
		t.Error("channel not rotated")
	}
}

func TestTwoNodesSeeRevocation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := twoNodes(t)
	p, err := a.DefaultPortal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pb, err := b.DefaultPortal(ctx); err != nil || pb.ID != p.ID || pb.MemberID != p.MemberID {
		t.Fatalf("second node's portal = %+v, %v; want %+v", pb, err, p)
	}
	app, err := a.CreateApp(ctx, p.ID, "app", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := a.CreateToken(ctx, store.Token{PortalID: p.ID, AppID: app.ID, UserID: 1, Scopes: []string{"pull"},
		AccessExpires: now.Add(time.Hour), RefreshExpires: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.TokenByAccess(ctx, tok.AccessToken); err != nil || got.Revoked {
		t.Fatalf("other node's TokenByAccess = %+v, %v; want live", got, err)
	}
	if err := b.RevokeToken(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	if got, err := a.TokenByAccess(ctx, tok.AccessToken); err != nil || !got.Revoked {
		t.Errorf("TokenByAccess after revoke on the other node = %+v, %v; want revoked", got, err)
	}
	if _, err := a.RotateRefresh(ctx, tok.RefreshToken, store.Token{PortalID: p.ID, AppID: app.ID, UserID: 1}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RotateRefresh of a pair revoked on the other node: err = %v, want ErrNotFound", err)
	}
}

// The single-use operations hold across nodes, not only across goroutines
// of one client: a refresh token rotates once, a code is used once, and a
// push job is leased to one claimer.
func TestTwoNodesSingleUse(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := twoNodes(t)
	nodes := [2]*redis.Store{a, b}
	p, err := a.DefaultPortal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := a.CreateToken(ctx, store.Token{PortalID: p.ID, AppID: 1, UserID: 1,
		AccessExpires: now.Add(time.Hour), RefreshExpires: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	code, err := a.CreateAuthCode(ctx, store.AuthCode{PortalID: p.ID, AppID: 1, UserID: 1, Expires: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.EnqueuePush(ctx, []byte("job"), now); err != nil {
		t.Fatal(err)
	}
	const n = 10
	var (
		wg                     sync.WaitGroup
		mu                     sync.Mutex
		rotated, used, claimed int
	)
	count := func(what string, won *int, err error) {
		switch {
		case err == nil:
			mu.Lock()
			*won++
			mu.Unlock()
		case !errors.Is(err, store.ErrNotFound):
			t.Errorf("%s: %v", what, err)
		}
	}
	for i := range n {
		s := nodes[i%2]
		wg.Go(func() {
			_, err := s.RotateRefresh(ctx, tok.RefreshToken, store.Token{PortalID: p.ID, AppID: 1, UserID: 1})
			count("RotateRefresh", &rotated, err)
		})
		wg.Go(func() {
			_, err := s.UseAuthCode(ctx, code.Code, 1, now)
			count("UseAuthCode", &used, err)
		})
		wg.Go(func() {
			_, err := s.ClaimPush(ctx, now, time.Minute)
			count("ClaimPush", &claimed, err)
		})
	}
	wg.Wait()
	if rotated != 1 || used != 1 || claimed != 1 {
		t.Errorf("winners: %d rotations, %d code uses, %d claims; want 1 each", rotated, used, claimed)
	}
}

// Tokens and codes get a Redis expiry a day past their last expiry, counted
// from now at the earliest; other records keep none.
func TestExpiry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := client(t)
	prefix := newPrefix(t)
	s := open(t, c, prefix)
	keys := redisconn.NewKeys(prefix)
	p, err := s.DefaultPortal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := s.CreateToken(ctx, store.Token{PortalID: p.ID, AppID: 1, UserID: 1,
		AccessExpires: now.Add(time.Hour), RefreshExpires: now.Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	past, err := s.CreateToken(ctx, store.Token{PortalID: p.ID, AppID: 1, UserID: 1,
		AccessExpires: now.Add(-48 * time.Hour), RefreshExpires: now.Add(-47 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	code, err := s.CreateAuthCode(ctx, store.AuthCode{PortalID: p.ID, AppID: 1, UserID: 1, Expires: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	pttl := func(k string) time.Duration {
		t.Helper()
		ms, err := c.Do(ctx, c.B().Pttl().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(ms) * time.Millisecond
	}
	within := func(what string, got, want time.Duration) {
		t.Helper()
		if got < want-time.Minute || got > want+time.Minute {
			t.Errorf("%s: PTTL = %v, want about %v", what, got, want)
		}
	}
	within("token", pttl(keys.Key("reg", "token", store.HashSecret(tok.AccessToken))), 72*time.Hour)
	within("refresh index", pttl(keys.Key("reg", "refresh", store.HashSecret(tok.RefreshToken))), 72*time.Hour)
	within("token stored already expired", pttl(keys.Key("reg", "token", store.HashSecret(past.AccessToken))), 24*time.Hour)
	within("code", pttl(keys.Key("reg", "code", store.HashSecret(code.Code))), 24*time.Hour+time.Minute)
	if got := pttl(keys.Key("reg", "portal", "default")); got >= 0 {
		t.Errorf("portal PTTL = %v, want no expiry", got)
	}
	if got, err := s.TokenByAccess(ctx, past.AccessToken); err != nil || !got.RefreshExpires.Before(now) {
		t.Errorf("expired token = %+v, %v; want it found", got, err)
	}
}

// Close leaves the shared client usable, and a store from a newer layout is
// refused rather than misread.
func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := client(t)
	prefix := newPrefix(t)
	s := open(t, c, prefix)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		t.Fatalf("client after Close: %v", err)
	}
	if err := c.Do(ctx, c.B().Set().Key(redisconn.NewKeys(prefix).Key("reg", "version")).Value("99").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := redis.Open(ctx, c, prefix, "d"); err == nil {
		t.Error("Open on a newer key layout succeeded")
	}
}

// TestRedisCluster runs the suite on a three-node Redis Cluster: every key
// of a prefix shares one hash tag, so the scripts stay within one slot.
func TestRedisCluster(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	c, err := redisconn.Open(t.Context(), rc.URL())
	if err != nil {
		t.Fatalf("redis cluster: %v", err)
	}
	t.Cleanup(c.Close)
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, c, newPrefix(t))
	})
}

// An app that an older build stored with its plain client secret keeps
// working, and opening the registry replaces the plain secret by its hash.
func TestLegacyPlainClientSecretIsHashed(t *testing.T) {
	ctx := t.Context()
	c := client(t)
	prefix := newPrefix(t)
	s := open(t, c, prefix)
	p, err := s.DefaultPortal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.CreateApp(ctx, p.ID, "old", []string{"pull"})
	if err != nil {
		t.Fatal(err)
	}
	k := redisconn.NewKeys(prefix).Key("reg", "app", a.ClientID)
	// What the older build wrote.
	if err := c.Do(ctx, c.B().Hdel().Key(k).Field("client_secret_hash").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Hset().Key(k).FieldValue().FieldValue("client_secret", a.ClientSecret).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.App(ctx, a.ClientID); err != nil || !got.SecretMatches(a.ClientSecret) {
		t.Fatalf("legacy app before the conversion = %+v, %v", got, err)
	}
	s = open(t, c, prefix)
	m, err := c.Do(ctx, c.B().Hgetall().Key(k).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	if _, plain := m["client_secret"]; plain || m["client_secret_hash"] != store.HashSecret(a.ClientSecret) {
		t.Fatalf("after reopening, the app record is %v", m)
	}
	if got, err := s.App(ctx, a.ClientID); err != nil || !got.SecretMatches(a.ClientSecret) {
		t.Fatalf("converted app = %+v, %v", got, err)
	}
}
