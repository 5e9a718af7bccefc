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
	}, hooks(shared.URL(), shared))
}

// hooks are the suite's engine hooks for brokers on url, whose Pub/Sub
// connections live on servers.
func hooks(url string, servers ...*redistest.Server) brokertest.Hooks {
	return brokertest.Hooks{
		Capped: func(t *testing.T, perChannel int) broker.Broker {
			return node(t, url, randomPrefix(t), nil, func(o *Options) { o.HistoryPerChannel = perChannel })
		},
		ByteCapped: func(t *testing.T, channelBytes int64) broker.Broker {
			return node(t, url, randomPrefix(t), nil, func(o *Options) { o.ChannelMaxBytes = channelBytes })
		},
		Outage: func(t *testing.T, br broker.Broker, away, during func()) {
			outage(t, br.(*Broker), servers, away, during)
		},
	}
}

// outage kills b's Pub/Sub connection and calls away, so that what away
// publishes reaches b only through its catch-up (or, if b is quick to
// subscribe again, both ways). Once b listens again it stops before its
// catch-up reads history while during publishes, until the Pub/Sub copies
// of that are held: the catch-up then reads them too. outage returns when
// the catch-up has ended.
func outage(t *testing.T, b *Broker, servers []*redistest.Server, away, during func()) {
	t.Helper()
	reached, resume, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	b.catchUpHooks.Store(&catchUpHooks{
		before: func() { close(reached); <-resume },
		after:  func() { close(done) },
	})
	defer func() {
		select {
		case <-resume:
		default:
			close(resume) // never leave the subscriber waiting
		}
	}()
	for _, s := range servers {
		if _, err := s.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
			t.Fatal(err)
		}
	}
	away()
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("waited 10s for the node to subscribe again")
	}
	during()
	waitFor(t, "the messages published during the catch-up to be held", func() bool {
		b.sub.deliverMu.Lock()
		defer b.sub.deliverMu.Unlock()
		return len(b.sub.held) > 0
	})
	close(resume)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("waited 10s for the node to catch up")
	}
}
