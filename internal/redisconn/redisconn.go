// Package redisconn opens the Redis connection that the cluster broker and
// the Redis registry share, and names the keys pushpull owns.
//
// Every key starts with one hash tag, "{<prefix>}:", so that on a Redis
// Cluster all of pushpull's keys live in one slot: the broker's Lua scripts
// touch a message's counter, history and channels atomically, which Redis
// Cluster allows only within a slot. A cluster therefore gives pushpull
// failover, not sharding; one Redis primary carries far more than the
// nodes in front of it (docs/cluster.md).
package redisconn

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// DefaultPrefix names pushpull's keys when no prefix is configured.
const DefaultPrefix = "pushpull"

// Open connects to the Redis named by rawURL and checks it answers:
//
//	redis://[user:password@]host:port[/db]     one Redis (rediss:// for TLS)
//	redis://host:port?addr=host2:port2          a Redis Cluster (any nodes)
//	redis://host:port?master_set=mymaster       Sentinel, host:port the sentinels
//
// valkey:// and valkeys:// are accepted as synonyms.
func Open(ctx context.Context, rawURL string) (rueidis.Client, error) {
	opt, err := Options(rawURL)
	if err != nil {
		return nil, err
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", Redact(rawURL), err)
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis %s: ping: %w", Redact(rawURL), err)
	}
	return c, nil
}

// Options parses rawURL into client options with pushpull's timeouts.
func Options(rawURL string) (rueidis.ClientOption, error) {
	opt, err := rueidis.ParseURL(rawURL)
	if err != nil {
		return opt, fmt.Errorf("redis URL %s: %w", Redact(rawURL), err)
	}
	// A dead Redis must be noticed in seconds: nodes report unhealthy and
	// refuse publishes rather than hang them.
	opt.Dialer.Timeout = 2 * time.Second
	opt.ConnWriteTimeout = 3 * time.Second
	// Client-side caching would keep serving registry reads that another
	// node has changed (a revoked token); every read goes to Redis.
	opt.DisableCache = true
	// Every connection keeps a reader running, so a connection that Redis
	// closed (a restart) is noticed when it happens rather than by the next
	// command, which would fail with EOF: after a restart the first publish
	// on each pooled connection would otherwise be refused.
	opt.AlwaysPipelining = true
	return opt, nil
}

// Redact returns rawURL without its password, for logs and errors.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Keys builds the names of pushpull's keys under one prefix.
type Keys struct{ base string }

// NewKeys returns the key namer for prefix ("" means DefaultPrefix).
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Keys{base: "{" + strings.NewReplacer("{", "", "}", "").Replace(prefix) + "}:"}
}

// Key joins parts under the prefix: Key("h", "ab") = "{pushpull}:h:ab".
func (k Keys) Key(parts ...string) string {
	return k.base + strings.Join(parts, ":")
}

// MemoryAdvice reads how Redis bounds its memory and returns what an
// operator should change, or "" when nothing. A node keeps each channel's
// history within its caps, but the history of all channels together is
// bounded only by Redis's maxmemory: without one, enough channels grow
// Redis until the machine runs out; with an allkeys-* policy, Redis may
// evict keys that carry no expiry: the id counter and the registry.
// Managed Redis services often refuse CONFIG; that is an error the caller
// may log and ignore.
func MemoryAdvice(ctx context.Context, c rueidis.Client) (string, error) {
	vals, err := c.Do(ctx, c.B().ConfigGet().Parameter("maxmemory", "maxmemory-policy").Build()).AsStrMap()
	if err != nil {
		return "", fmt.Errorf("redis config get maxmemory: %w", err)
	}
	switch limit, policy := vals["maxmemory"], vals["maxmemory-policy"]; {
	case limit == "" || limit == "0":
		return "redis has no maxmemory: stored history is bounded per channel but not in all; set maxmemory, with the noeviction or a volatile-* policy", nil
	case strings.HasPrefix(policy, "allkeys-"):
		return "redis evicts any key (maxmemory-policy " + policy + "), message ids and the registry included; use noeviction or a volatile-* policy", nil
	}
	return "", nil
}
