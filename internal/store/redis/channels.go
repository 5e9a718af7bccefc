package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/store"
)

// --- channels ---

// channelCASLua replaces the channel only if its private id is still the one
// the caller saw expire (ARGV[1], "" = there was none): of racing nodes,
// exactly one replaces it and the others read the winner's.
const channelCASLua = `
local cur = redis.call('HGET', KEYS[1], 'private_id') or ''
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'private_id', ARGV[2], 'public_id', ARGV[3], 'start', ARGV[4], 'end', ARGV[5])
return 1
`

func (s *Store) channelKey(k store.ChannelKey) string {
	return s.key("chan", itoa(k.PortalID), itoa(k.AppID), itoa(k.UserID), k.Type)
}

func (s *Store) readChannel(ctx context.Context, key store.ChannelKey) (store.Channel, bool, error) {
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(s.channelKey(key)).Build()).AsStrMap()
	if err != nil {
		return store.Channel{}, false, err
	}
	return parseChannel(key, m)
}

func parseChannel(key store.ChannelKey, m map[string]string) (store.Channel, bool, error) {
	if len(m) == 0 {
		return store.Channel{}, false, nil
	}
	f := fields{m: m}
	c := store.Channel{
		PortalID: key.PortalID, AppID: key.AppID, UserID: key.UserID, Type: key.Type,
		PrivateID: f.str("private_id"), PublicID: f.str("public_id"), Start: f.time("start"), End: f.time("end"),
	}
	return c, true, f.err
}

// ChannelFor implements store.Store.
func (s *Store) ChannelFor(ctx context.Context, key store.ChannelKey, now time.Time, ttl time.Duration) (store.Channel, *store.Channel, error) {
	old, found, err := s.readChannel(ctx, key)
	if err != nil {
		return store.Channel{}, nil, fmt.Errorf("redis store: channel: %w", err)
	}
	cur, replaced, err := s.settleChannel(ctx, key, old, found, now, ttl)
	if err != nil {
		return store.Channel{}, nil, fmt.Errorf("redis store: channel: %w", err)
	}
	return cur, replaced, nil
}

// settleChannel returns the channel valid at now given the state last read
// (old, found), replacing it by compare-and-set if it is missing or expired.
// On a lost race it reads the winner's channel and starts over.
func (s *Store) settleChannel(ctx context.Context, key store.ChannelKey, old store.Channel, found bool, now time.Time, ttl time.Duration) (store.Channel, *store.Channel, error) {
	for range maxCASRounds {
		if found && !old.Expired(now) {
			return old, nil, nil
		}
		cur := store.Channel{PortalID: key.PortalID, AppID: key.AppID, UserID: key.UserID, Type: key.Type, Start: now, End: now.Add(ttl)}
		var err error
		if cur.PrivateID, err = store.NewChannelID(); err != nil {
			return store.Channel{}, nil, err
		}
		if key.UserID != 0 { // shared channels have no public id
			if cur.PublicID, err = store.NewChannelID(); err != nil {
				return store.Channel{}, nil, err
			}
		}
		expect := ""
		if found {
			expect = old.PrivateID
		}
		ok, err := s.channelCAS.Exec(ctx, s.c, []string{s.channelKey(key)},
			[]string{expect, cur.PrivateID, cur.PublicID, itoa(store.EncodeTime(cur.Start)), itoa(store.EncodeTime(cur.End))}).AsInt64()
		if err != nil {
			return store.Channel{}, nil, err
		}
		if ok == 1 {
			cur.Start, cur.End = roundTrip(cur.Start), roundTrip(cur.End)
			if !found {
				return cur, nil, nil
			}
			return cur, &old, nil
		}
		if old, found, err = s.readChannel(ctx, key); err != nil {
			return store.Channel{}, nil, err
		}
	}
	return store.Channel{}, nil, fmt.Errorf("channel %s replaced concurrently %d times in a row", s.channelKey(key), maxCASRounds)
}

// PublicChannels implements store.Store. All channels are read in one round
// trip; only missing or expired ones take the compare-and-set path.
func (s *Store) PublicChannels(ctx context.Context, portalID, appID int64, userIDs []int64, now time.Time, ttl time.Duration) (map[int64]store.Channel, []store.Channel, error) {
	typ := store.TypePrivate
	if appID != 0 {
		ids, err := s.c.Do(ctx, s.c.B().Zrangebyscore().Key(s.key("apps", itoa(portalID))).Min(itoa(appID)).Max(itoa(appID)).Build()).AsStrSlice()
		if err != nil {
			return nil, nil, fmt.Errorf("redis store: public channels: app %d: %w", appID, err)
		}
		if len(ids) == 0 {
			return nil, nil, fmt.Errorf("redis store: public channels: app %d: %w", appID, store.ErrNotFound)
		}
		typ = ids[0]
	}
	channels := make(map[int64]store.Channel, len(userIDs))
	var keys []store.ChannelKey
	seen := make(map[int64]bool, len(userIDs))
	for _, id := range userIDs {
		if id == 0 || seen[id] {
			continue
		}
		seen[id] = true
		keys = append(keys, store.ChannelKey{PortalID: portalID, AppID: appID, UserID: id, Type: typ})
	}
	if len(keys) == 0 {
		return channels, nil, nil
	}
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = s.c.B().Hgetall().Key(s.channelKey(k)).Build()
	}
	var replaced []store.Channel
	for i, r := range s.c.DoMulti(ctx, cmds...) {
		k := keys[i]
		m, err := r.AsStrMap()
		if err != nil {
			return nil, nil, fmt.Errorf("redis store: public channels: user %d: %w", k.UserID, err)
		}
		old, found, err := parseChannel(k, m)
		if err != nil {
			return nil, nil, fmt.Errorf("redis store: public channels: user %d: %w", k.UserID, err)
		}
		cur, prev, err := s.settleChannel(ctx, k, old, found, now, ttl)
		if err != nil {
			return nil, nil, fmt.Errorf("redis store: public channels: user %d: %w", k.UserID, err)
		}
		channels[k.UserID] = cur
		if prev != nil {
			replaced = append(replaced, *prev)
		}
	}
	return channels, replaced, nil
}
