package redisconn

import (
	"context"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/redistest"
)

func TestMemoryAdvice(t *testing.T) {
	srv := redistest.Start(t)
	c, err := Open(context.Background(), srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		limit, policy, want string
	}{
		{"0", "noeviction", "no maxmemory"},
		{"100mb", "allkeys-lru", "allkeys-lru"},
		{"100mb", "volatile-ttl", ""},
		{"100mb", "noeviction", ""},
	} {
		for _, kv := range [][2]string{{"maxmemory", tc.limit}, {"maxmemory-policy", tc.policy}} {
			if _, err := srv.Do("CONFIG", "SET", kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
		got, err := MemoryAdvice(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("maxmemory %s, %s: advice %q; want one naming %q", tc.limit, tc.policy, got, tc.want)
		}
	}
}
