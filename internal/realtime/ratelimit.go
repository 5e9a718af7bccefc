package realtime

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/clientaddr"
	"github.com/pushpull/pushpull/internal/message"
)

// Client publishing is limited in messages (one message to one receiver
// counts one), not requests: a request is cheap to send and can carry
// thousands of deliveries, and it is deliveries that fill a receiver's send
// queue until it is dropped as a slow consumer. Three token buckets apply:
// the sender's (its WebSocket connection, or its address on /pubweb/), and
// each receiver's, whoever sends. Over a limit the request is refused and
// nothing of it is published; receivers are never cut for it.

// RateLimit is a token bucket's shape: PerSecond messages a second on
// average, up to Burst at once. A PerSecond of 0 means no limit.
type RateLimit struct {
	PerSecond int
	Burst     int
}

// bucket is one token bucket. Its zero value is full.
type bucket struct {
	used float64 // tokens taken and not yet refilled
	last time.Time
}

// take removes n tokens if the bucket holds them, refilling it first for
// the time since the last take.
func (b *bucket) take(l RateLimit, now time.Time, n int) bool {
	if l.PerSecond <= 0 {
		return true
	}
	b.refill(l, now)
	if b.used+float64(n) > float64(l.Burst) {
		return false
	}
	b.used += float64(n)
	return true
}

func (b *bucket) refill(l RateLimit, now time.Time) {
	if !b.last.IsZero() {
		b.used = max(0, b.used-now.Sub(b.last).Seconds()*float64(l.PerSecond))
	}
	b.last = now
}

// connBucket is a WebSocket connection's own budget. Its requests are read
// one at a time, but by successive goroutines of the poller.
type connBucket struct {
	mu sync.Mutex
	b  bucket
}

func (c *connBucket) take(l RateLimit, now time.Time, n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.take(l, now, n)
}

// bucketMap holds the buckets of many keys (addresses, channels) in bounded
// memory: at max keys, full buckets (as good as absent) are dropped, and if
// that frees too little, arbitrary ones. A dropped bucket starts full
// again, which is the cost of bounding what an attacker with many
// addresses can make the server hold.
type bucketMap[K comparable] struct {
	limit RateLimit
	max   int
	mu    sync.Mutex
	m     map[K]*bucket
}

func newBucketMap[K comparable](l RateLimit, max int) *bucketMap[K] {
	return &bucketMap[K]{limit: l, max: max, m: make(map[K]*bucket)}
}

// takeAll takes cost[k] tokens from the bucket of every k, or none if any
// of them lacks its share.
func (bm *bucketMap[K]) takeAll(now time.Time, cost map[K]int) bool {
	if bm.limit.PerSecond <= 0 {
		return true
	}
	bm.mu.Lock()
	defer bm.mu.Unlock()
	for k, n := range cost {
		b := bm.m[k]
		if b == nil {
			if n > bm.limit.Burst {
				return false
			}
			continue
		}
		b.refill(bm.limit, now)
		if b.used+float64(n) > float64(bm.limit.Burst) {
			return false
		}
	}
	for k, n := range cost {
		b := bm.m[k]
		if b == nil {
			bm.makeRoom(now)
			b = &bucket{last: now}
			bm.m[k] = b
		}
		b.used += float64(n)
	}
	return true
}

// makeRoom keeps the map under max keys; amortised O(1) per new key, since
// it frees at least an eighth of the map when it runs.
func (bm *bucketMap[K]) makeRoom(now time.Time) {
	if len(bm.m) < bm.max {
		return
	}
	for k, b := range bm.m {
		if b.refill(bm.limit, now); b.used == 0 {
			delete(bm.m, k)
		}
	}
	for k := range bm.m {
		if len(bm.m) <= bm.max-bm.max/8-1 {
			break
		}
		delete(bm.m, k)
	}
}

func (bm *bucketMap[K]) len() int {
	bm.mu.Lock()
	defer bm.mu.Unlock()
	return len(bm.m)
}

// maxLimitKeys bounds each map of buckets: about 100 bytes a key.
const maxLimitKeys = 1 << 16

// publishLimits are the server's client-publishing limits.
type publishLimits struct {
	conn   RateLimit
	byIP   *bucketMap[netip.Prefix]
	byChan *bucketMap[channel.ID]
	now    func() time.Time
}

func newPublishLimits(conn, byIP, byChan RateLimit) *publishLimits {
	return &publishLimits{
		conn:   conn,
		byIP:   newBucketMap[netip.Prefix](byIP, maxLimitKeys),
		byChan: newBucketMap[channel.ID](byChan, maxLimitKeys),
		now:    time.Now,
	}
}

// publishSource is who is charged for a client's publish: its WebSocket
// connection's bucket, or (over HTTP) its address; with neither, only the
// receivers' limits apply.
type publishSource struct {
	conn *connBucket
	ip   netip.Prefix
}

// clientPrefix is the client's address as rate limits count it
// (clientaddr.Key); behind a reverse proxy not in --trusted-proxies every
// client has the proxy's address.
func clientPrefix(r *http.Request) netip.Prefix {
	p, _ := clientaddr.Key(r.RemoteAddr)
	return p
}

// admit charges msgs to src and to each receiver, or refuses them all.
func (l *publishLimits) admit(src publishSource, msgs []*message.Message) bool {
	now := l.now()
	total := 0
	byChan := make(map[channel.ID]int)
	for _, m := range msgs {
		total += len(m.Receivers)
		for _, r := range m.Receivers {
			byChan[r.ID]++
		}
	}
	switch {
	case src.conn != nil:
		if !src.conn.take(l.conn, now, total) {
			return false
		}
	case src.ip.IsValid():
		if !l.byIP.takeAll(now, map[netip.Prefix]int{src.ip: total}) {
			return false
		}
	}
	// Charged to the sender even when a receiver refuses: a sender
	// hammering a full receiver spends its own budget doing it.
	return l.byChan.takeAll(now, byChan)
}
