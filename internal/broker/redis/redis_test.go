package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/broker/brokertest"
	"github.com/pushpull/pushpull/internal/redisconn"
	"github.com/pushpull/pushpull/internal/redistest"
)

// shared is the package's Redis; each test gets its own key prefix.
var shared *redistest.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pushpull-redis-broker")
	if err != nil {
		panic(err)
	}
	shared, err = redistest.New(dir)
	if err != nil {
		// Fail, not skip: the cluster engine is part of what is tested.
		os.Stderr.WriteString("redis: " + err.Error() + "\n")
		os.Exit(1)
	}
	code := m.Run()
	shared.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newClient(t testing.TB, url string) rueidis.Client {
	t.Helper()
	c, err := redisconn.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func randomPrefix(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b[:])
}

// node starts one broker ("node") on url under prefix.
func node(t testing.TB, url, prefix string, d broker.Deliverer, tune func(*Options)) *Broker {
	t.Helper()
	opt := Options{Client: newClient(t, url), Prefix: prefix, HistoryPerChannel: 1000,
		Heartbeat: time.Second, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
	if tune != nil {
		tune(&opt)
	}
	b, err := New(opt, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.Healthy(); err != nil {
		t.Fatalf("new broker not healthy: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, d broker.Deliverer) broker.Broker {
		return node(t, shared.URL(), randomPrefix(t), d, nil)
	})
}
