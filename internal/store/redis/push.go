package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/store"
)

// --- push queue ---

// The due zset orders jobs by "<next attempt>:<id>", both as fixed-width
// decimals (see lexTime), all at score 0: a lexicographic range then picks
// the oldest due job exactly, which a score (a double) could not do with
// nanosecond times. push:member maps a job id to its current zset member.

const enqueueLua = `
local id = redis.call('INCR', KEYS[1])
local m = ARGV[2] .. ':' .. string.format('%020d', id)
redis.call('ZADD', KEYS[2], 0, m)
redis.call('HSET', KEYS[3], id, m)
redis.call('HSET', KEYS[4], id, ARGV[1])
redis.call('HSET', KEYS[5], id, 0)
redis.call('HSET', KEYS[6], id, ARGV[3])
return id
`

const claimLua = `
local r = redis.call('ZRANGEBYLEX', KEYS[1], '-', ARGV[1], 'LIMIT', 0, 1)
if #r == 0 then return false end
local padded = string.sub(r[1], 22)
local id = string.match(padded, '^0*(%d+)$')
local m = ARGV[2] .. ':' .. padded
redis.call('ZREM', KEYS[1], r[1])
redis.call('ZADD', KEYS[1], 0, m)
redis.call('HSET', KEYS[2], id, m)
return {id, redis.call('HGET', KEYS[3], id), redis.call('HGET', KEYS[4], id), redis.call('HGET', KEYS[5], id)}
`

const completeLua = `
local m = redis.call('HGET', KEYS[2], ARGV[1])
if not m then return 0 end
redis.call('ZREM', KEYS[1], m)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
return 1
`

const retryLua = `
local m = redis.call('HGET', KEYS[2], ARGV[1])
if not m then return 0 end
local n = ARGV[2] .. ':' .. string.sub(m, 22)
redis.call('ZREM', KEYS[1], m)
redis.call('ZADD', KEYS[1], 0, n)
redis.call('HSET', KEYS[2], ARGV[1], n)
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
return 1
`

func (s *Store) pushKeys(names ...string) []string {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = s.key("push", n)
	}
	return keys
}

// EnqueuePush implements store.Store.
func (s *Store) EnqueuePush(ctx context.Context, payload []byte, now time.Time) (store.PushJob, error) {
	id, err := s.enqueue.Exec(ctx, s.c, s.pushKeys("seq", "due", "member", "payload", "attempts", "created"),
		[]string{string(payload), lexTime(now), itoa(store.EncodeTime(now))}).AsInt64()
	if err != nil {
		return store.PushJob{}, fmt.Errorf("redis store: enqueue push: %w", err)
	}
	now = roundTrip(now)
	return store.PushJob{ID: id, Payload: append([]byte(nil), payload...), NextAttempt: now, CreatedAt: now}, nil
}

// ClaimPush implements store.Store.
func (s *Store) ClaimPush(ctx context.Context, now time.Time, lease time.Duration) (store.PushJob, error) {
	next := now.Add(lease)
	// Members due at now sort below "<lexTime(now)>;" (';' follows ':').
	vals, err := s.claim.Exec(ctx, s.c, s.pushKeys("due", "member", "payload", "attempts", "created"),
		[]string{"(" + lexTime(now) + ";", lexTime(next)}).ToArray()
	if rueidis.IsRedisNil(err) {
		return store.PushJob{}, fmt.Errorf("redis store: claim push: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.PushJob{}, fmt.Errorf("redis store: claim push: %w", err)
	}
	if len(vals) != 4 {
		return store.PushJob{}, fmt.Errorf("redis store: claim push: script returned %d values", len(vals))
	}
	var str [4]string
	for i, v := range vals {
		if str[i], err = v.ToString(); err != nil {
			return store.PushJob{}, fmt.Errorf("redis store: claim push: corrupt job: %w", err)
		}
	}
	j := store.PushJob{Payload: []byte(str[1]), NextAttempt: roundTrip(next)}
	var created, attempts int64
	if j.ID, err = strconv.ParseInt(str[0], 10, 64); err == nil {
		if attempts, err = strconv.ParseInt(str[2], 10, 64); err == nil {
			created, err = strconv.ParseInt(str[3], 10, 64)
		}
	}
	if err != nil {
		return store.PushJob{}, fmt.Errorf("redis store: claim push: corrupt job: %w", err)
	}
	j.Attempts, j.CreatedAt = int(attempts), store.DecodeTime(created)
	return j, nil
}

// CompletePush implements store.Store.
func (s *Store) CompletePush(ctx context.Context, id int64) error {
	ok, err := s.complete.Exec(ctx, s.c, s.pushKeys("due", "member", "payload", "attempts", "created"), []string{itoa(id)}).AsInt64()
	return pushResult("complete push", ok, err)
}

// RetryPush implements store.Store.
func (s *Store) RetryPush(ctx context.Context, id int64, next time.Time) error {
	ok, err := s.retry.Exec(ctx, s.c, s.pushKeys("due", "member", "attempts"), []string{itoa(id), lexTime(next)}).AsInt64()
	return pushResult("retry push", ok, err)
}

// PushQueueLen implements store.Store: every job has one member in the due
// set.
func (s *Store) PushQueueLen(ctx context.Context) (int64, error) {
	n, err := s.c.Do(ctx, s.c.B().Zcard().Key(s.key("push", "due")).Build()).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("redis store: push queue length: %w", err)
	}
	return n, nil
}

func pushResult(op string, ok int64, err error) error {
	if err != nil {
		return fmt.Errorf("redis store: %s: %w", op, err)
	}
	if ok == 0 {
		return fmt.Errorf("redis store: %s: %w", op, store.ErrNotFound)
	}
	return nil
}

// lexTime encodes t as 20 decimal digits that sort like the times: the
// Unix nanoseconds with the sign bit flipped, so that times before 1970
// sort first too.
func lexTime(t time.Time) string {
	return fmt.Sprintf("%020d", uint64(store.EncodeTime(t))^(1<<63))
}
