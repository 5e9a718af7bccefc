// Package redis is the cluster broker: every pushpull node shares one Redis
// (or Valkey) for message ids, history, presence and fan-out, so any node
// serves any subscriber and accepts any publish.
//
// Layout, under the key prefix's hash tag (see redisconn):
//
//	startdate, counter   the mid's 10-digit epoch and 16-digit counter
//	m:<mid>              one message (mid + codec tail), expiring with it
//	h:<channel hex>      a channel's history: a sorted set of mids (lexical order)
//	z:<channel hex>      the size of each of those messages, by mid
//	s:<channel hex>      the sum of those sizes, for the channel's byte cap
//	l:<channel hex>      the newest mid its history dropped before it expired
//	c:<channel hex>      the Pub/Sub channel its messages are published to
//	o:<channel hex>      a hash of node id -> that node's connections on it
//	nodes                a sorted set of node ids by last heartbeat
//
// Fan-out is by interest: a node SUBSCRIBEs to the Pub/Sub channels of the
// channels it has local connections on, and no others, so a message costs
// one PUBLISH per receiver and reaches only the nodes that need it.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/redisconn"
	"github.com/pushpull/pushpull/internal/stats"
)

// Options configure a Broker.
type Options struct {
	// Client is the connection to Redis. The broker does not close it.
	Client rueidis.Client
	// Prefix names the keys (redisconn.NewKeys); nodes of one cluster share it.
	Prefix string
	// NodeID names this node in presence; empty picks a random one.
	NodeID string
	// MaxPayload refuses messages whose payload (broker.PayloadSize) is
	// larger, with broker.ErrTooLarge. 0: no limit.
	MaxPayload int64
	// HistoryPerChannel caps the messages stored per channel.
	HistoryPerChannel int
	// ChannelMaxBytes caps the size of one channel's stored messages (mid
	// plus encoded message each); beyond it the oldest go first. 0: no cap.
	// At least MaxPayload, or a channel could not keep its largest message.
	ChannelMaxBytes int64
	// LiveRetention keeps messages published with expiry 0 replayable for
	// this long (see the memory engine).
	LiveRetention time.Duration
	// Heartbeat is how often the node refreshes its presence; a node silent
	// for three heartbeats is counted as gone. 0 means 10 s.
	Heartbeat time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// reach Redis again. 0 means 50 ms and 1 s.
	ReconnectMin, ReconnectMax time.Duration
	// StartWait is how long New waits for the first Pub/Sub connection
	// before it returns a broker that is not yet healthy. 0 means 5 s.
	StartWait time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Broker is the Redis engine.
type Broker struct {
	opt    Options
	client rueidis.Client
	keys   redisconn.Keys
	base   string // the key prefix the scripts build keys from
	// route is the KEYS of scripts that build their keys themselves: on a
	// Redis Cluster it sends them to the node of the prefix's slot.
	route   []string
	node    string
	now     func() time.Time
	log     *slog.Logger
	deliver broker.Deliverer

	// floor is the newest mid this node has seen, as 26 digits (see
	// publishScript).
	floorMu sync.Mutex
	floor   message.ID

	sub *subscriber

	heartbeatOK atomic.Bool
	// Counted for the metrics (Stats).
	rtt        *stats.Histogram // round trips of the publish and heartbeat scripts, ns
	received   atomic.Uint64    // messages handed to the Deliverer
	reconnects atomic.Uint64    // Pub/Sub connections lost and tried again
	// catchUpHooks lets tests act at the edges of the next catch-up.
	catchUpHooks atomic.Pointer[catchUpHooks]
	stop         chan struct{}
	done         sync.WaitGroup
	closeOnce    sync.Once
}

// catchUpHooks run, once, just before a catch-up reads history and just
// after it has delivered what it read and what was held.
type catchUpHooks struct {
	before, after func()
}

// New starts the broker: its Pub/Sub connection and its heartbeat. It does
// not wait for Redis: a node starts, and reports unhealthy, while Redis is
// down.
func New(opt Options, d broker.Deliverer) (*Broker, error) {
	if opt.Client == nil {
		return nil, errors.New("redis broker: no client")
	}
	if opt.HistoryPerChannel <= 0 {
		return nil, fmt.Errorf("redis broker: history per channel must be positive, got %d", opt.HistoryPerChannel)
	}
	if opt.ChannelMaxBytes < 0 || (opt.ChannelMaxBytes > 0 && opt.ChannelMaxBytes < opt.MaxPayload) {
		return nil, fmt.Errorf("redis broker: channel byte cap %d: want 0 or at least the largest payload (%d)", opt.ChannelMaxBytes, opt.MaxPayload)
	}
	if opt.Heartbeat <= 0 {
		opt.Heartbeat = 10 * time.Second
	}
	if opt.ReconnectMin <= 0 {
		opt.ReconnectMin = 50 * time.Millisecond
	}
	if opt.ReconnectMax <= 0 {
		opt.ReconnectMax = time.Second
	}
	if opt.StartWait <= 0 {
		opt.StartWait = 5 * time.Second
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.NodeID == "" {
		id, err := randomNodeID()
		if err != nil {
			return nil, err
		}
		opt.NodeID = id
	}
	keys := redisconn.NewKeys(opt.Prefix)
	b := &Broker{
		opt:     opt,
		client:  opt.Client,
		keys:    keys,
		base:    keys.Key(""),
		route:   []string{keys.Key("nodes")},
		node:    opt.NodeID,
		now:     opt.Now,
		log:     opt.Log,
		deliver: d,
		stop:    make(chan struct{}),
		rtt:     newRTTHistogram(),
	}
	b.sub = newSubscriber(b)
	b.heartbeat()
	b.done.Add(2)
	go func() { defer b.done.Done(); b.sub.run(b.stop) }()
	go func() { defer b.done.Done(); b.heartbeatLoop() }()
	// Give the first connection a moment, so that a node that starts next
	// to a running Redis accepts subscribers at once.
	select {
	case <-b.sub.ready:
	case <-time.After(opt.StartWait):
		opt.Log.Warn("redis is not reachable yet; the node reports unhealthy (/readyz 503) and keeps trying: check that Redis runs at --redis")
	}
	return b, nil
}

// Publish implements broker.Broker. It returns once Redis has stored and
// published the message; an error means it did neither.
func (b *Broker) Publish(ctx context.Context, m *message.Message) error {
	if b.closed() {
		return broker.ErrClosed
	}
	if err := broker.CheckPayload(m, b.opt.MaxPayload); err != nil {
		return err
	}
	m.Created = b.now()
	ttl := time.Duration(m.Expiry) * time.Second
	if m.Expiry == 0 {
		ttl = b.opt.LiveRetention
	}
	args := make([]string, 0, 7+len(m.Receivers))
	args = append(args, b.base, b.epochNow(), b.floorText(),
		strconv.FormatInt(ttl.Milliseconds(), 10), strconv.Itoa(b.opt.HistoryPerChannel),
		strconv.FormatInt(b.opt.ChannelMaxBytes, 10), string(appendTail(nil, m)))
	for _, r := range m.Receivers {
		args = append(args, hex.EncodeToString(r.ID[:]))
	}
	start := time.Now()
	id, err := b.assign(ctx, args)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	b.rtt.Observe(int64(time.Since(start)))
	m.ID = id
	return nil
}

// NewID implements broker.Broker.
func (b *Broker) NewID(ctx context.Context) (message.ID, error) {
	if b.closed() {
		return message.ID{}, broker.ErrClosed
	}
	id, err := b.assign(ctx, []string{b.base, b.epochNow(), b.floorText(), "0", "1", "0", ""})
	if err != nil {
		return message.ID{}, fmt.Errorf("new id: %w", err)
	}
	return id, nil
}

func (b *Broker) assign(ctx context.Context, args []string) (message.ID, error) {
	s, err := publishScript.Exec(ctx, b.client, []string{b.keys.Key("startdate"), b.keys.Key("counter")}, args).ToString()
	if err != nil {
		return message.ID{}, fmt.Errorf("redis: %w", err)
	}
	id, err := message.ParseID(s)
	if err != nil {
		return message.ID{}, fmt.Errorf("redis assigned id %q: %w", s, err)
	}
	b.saw(id)
	return id, nil
}

// currentID is the newest id Redis has assigned, zero if none.
func (b *Broker) currentID(ctx context.Context) (message.ID, error) {
	vals, err := b.client.Do(ctx, b.client.B().Mget().Key(b.keys.Key("startdate"), b.keys.Key("counter")).Build()).ToArray()
	if err != nil {
		return message.ID{}, fmt.Errorf("current id: redis: %w", err)
	}
	start, err1 := vals[0].ToString()
	counter, err2 := vals[1].AsInt64()
	if rueidis.IsRedisNil(err1) || rueidis.IsRedisNil(err2) {
		return message.ID{}, nil
	}
	if err := errors.Join(err1, err2); err != nil {
		return message.ID{}, fmt.Errorf("current id: %w", err)
	}
	id, err := message.ParseID(fmt.Sprintf("%s%016d", start, counter))
	if err != nil {
		return message.ID{}, fmt.Errorf("current id %s/%d: %w", start, counter, err)
	}
	return id, nil
}

// saw raises the floor to id.
func (b *Broker) saw(id message.ID) {
	b.floorMu.Lock()
	if b.floor.Less(id) {
		b.floor = id
	}
	b.floorMu.Unlock()
}

func (b *Broker) floorText() string {
	b.floorMu.Lock()
	defer b.floorMu.Unlock()
	if b.floor.IsZero() {
		return ""
	}
	return b.floor.String()
}

func (b *Broker) epochNow() string {
	return fmt.Sprintf("%010d", b.now().Unix())
}

// History implements broker.Broker.
func (b *Broker) History(ctx context.Context, channels []channel.ID, after message.ID, limit broker.HistoryLimit) ([]broker.Entry, error) {
	p, err := b.Recover(ctx, channels, after, limit)
	return p.Entries, err
}

// Recover implements broker.Broker: for each channel the oldest mids after
// after (one more than limit.PerChannel, to see whether there are more) and
// its lost marker in one pipeline, the page cut by broker.Paginate, and its
// messages read in one MGET. Entries whose message has expired are skipped
// (and dropped from the index).
func (b *Broker) Recover(ctx context.Context, channels []channel.ID, after message.ID, limit broker.HistoryLimit) (broker.Page, error) {
	if len(channels) == 0 {
		return broker.Page{}, nil
	}
	min := "-"
	if !after.IsZero() {
		min = "(" + after.String()
	}
	per := int64(limit.PerChannel)
	if per <= 0 {
		per = int64(b.opt.HistoryPerChannel)
	}
	cmds := make(rueidis.Commands, 0, 2*len(channels))
	for _, ch := range channels {
		cmds = append(cmds,
			b.client.B().Zrangebylex().Key(b.historyKey(ch)).Min(min).Max("+").Limit(0, per+1).Build(),
			b.client.B().Get().Key(b.lostKey(ch)).Build())
	}
	// The page is cut on the index, before the messages are read: a
	// message that expires meanwhile leaves a hole in the page, not in
	// what the next page starts after.
	var p broker.Page
	reads := make([][]broker.Entry, 0, len(channels))
	placeholder := make(map[string]*message.Message)
	res := b.client.DoMulti(ctx, cmds...)
	for i, ch := range channels {
		mids, err := res[2*i].AsStrSlice()
		if err != nil {
			return broker.Page{}, fmt.Errorf("history: redis: %w", err)
		}
		var l []broker.Entry
		for _, mid := range mids {
			id, err := message.ParseID(mid)
			if err != nil {
				b.log.Error("skipping a history entry that is not a mid", "channel", ch, "mid", mid)
				continue
			}
			m := placeholder[mid]
			if m == nil {
				m = &message.Message{ID: id}
				placeholder[mid] = m
			}
			l = append(l, broker.Entry{Msg: m, Channel: ch})
		}
		reads = append(reads, l)
		lost, err := res[2*i+1].ToString()
		switch {
		case rueidis.IsRedisNil(err):
		case err != nil:
			return broker.Page{}, fmt.Errorf("history: redis: %w", err)
		default:
			if id, err := message.ParseID(lost); err == nil && after.Less(id) && p.Lost.Less(id) {
				p.Lost, p.LostChannel = id, ch
			}
		}
	}
	page := broker.Paginate(reads, limit)
	page.Lost, page.LostChannel = p.Lost, p.LostChannel
	if len(page.Entries) == 0 {
		return page, nil
	}
	keys := make([]string, 0, len(page.Entries))
	index := make(map[message.ID]int, len(page.Entries))
	for _, e := range page.Entries {
		if _, ok := index[e.Msg.ID]; !ok {
			index[e.Msg.ID] = len(keys)
			keys = append(keys, b.keys.Key("m", e.Msg.ID.String()))
		}
	}
	vals, err := b.client.Do(ctx, b.client.B().Mget().Key(keys...).Build()).ToArray()
	if err != nil {
		return broker.Page{}, fmt.Errorf("history: redis: %w", err)
	}
	msgs := make([]*message.Message, len(keys))
	for i, v := range vals {
		s, err := v.ToString()
		if rueidis.IsRedisNil(err) {
			continue // expired since the index was read
		}
		if err != nil {
			return broker.Page{}, fmt.Errorf("history: redis: %w", err)
		}
		m, err := decode(s)
		if err != nil {
			b.log.Error("skipping a stored message that does not decode", "key", keys[i], "err", err)
			continue
		}
		msgs[i] = m
	}
	out := page.Entries[:0]
	var stale []string
	for _, e := range page.Entries {
		if m := msgs[index[e.Msg.ID]]; m != nil {
			out = append(out, broker.Entry{Msg: m, Channel: e.Channel})
			continue
		}
		if stale == nil {
			stale = []string{b.base}
		}
		stale = append(stale, hex.EncodeToString(e.Channel[:]), e.Msg.ID.String())
	}
	page.Entries = out
	if stale != nil {
		if err := forgetScript.Exec(ctx, b.client, b.route, stale).Error(); err != nil {
			b.log.Debug("dropping expired history entries", "err", err)
		}
	}
	return page, nil
}

// LastID implements broker.Broker.
func (b *Broker) LastID(ctx context.Context, channels []channel.ID) (message.ID, bool, error) {
	if len(channels) == 0 {
		return message.ID{}, false, nil
	}
	s, err := lastIDScript.Exec(ctx, b.client, b.route, b.channelArgs([]string{b.base}, channels)).ToString()
	if err != nil {
		return message.ID{}, false, fmt.Errorf("last id: redis: %w", err)
	}
	if s == "" {
		return message.ID{}, false, nil
	}
	id, err := message.ParseID(s)
	if err != nil {
		return message.ID{}, false, fmt.Errorf("last id %q: %w", s, err)
	}
	return id, true, nil
}

// Attach implements broker.Broker: it counts the connection in presence and,
// for channels new to this node, subscribes to their Pub/Sub channels before
// it returns, so that everything published after Attach reaches this node.
func (b *Broker) Attach(ctx context.Context, channels []channel.ID) error {
	if b.closed() {
		return broker.ErrClosed
	}
	if err := b.sub.add(ctx, channels); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	ttl := strconv.FormatInt((3 * b.opt.Heartbeat).Milliseconds(), 10)
	if err := attachScript.Exec(ctx, b.client, b.route, b.channelArgs([]string{b.base, b.node, ttl}, channels)).Error(); err != nil {
		b.sub.remove(channels)
		return fmt.Errorf("attach: presence: redis: %w", err)
	}
	return nil
}

// Detach implements broker.Broker.
func (b *Broker) Detach(ctx context.Context, channels []channel.ID) error {
	b.sub.remove(channels)
	if b.closed() {
		return nil
	}
	if err := detachScript.Exec(ctx, b.client, b.route, b.channelArgs([]string{b.base, b.node}, channels)).Error(); err != nil {
		// The heartbeat rewrites this node's counts from its own.
		return fmt.Errorf("detach: presence: redis: %w", err)
	}
	return nil
}

// Online implements broker.Broker: connections of live nodes only.
func (b *Broker) Online(ctx context.Context, channels []channel.ID) ([]int, error) {
	if len(channels) == 0 {
		return nil, nil
	}
	oldest := b.now().Add(-3 * b.opt.Heartbeat).UnixMilli()
	vals, err := onlineScript.Exec(ctx, b.client, b.route, b.channelArgs([]string{b.base, strconv.FormatInt(oldest, 10)}, channels)).AsIntSlice()
	if err != nil {
		return nil, fmt.Errorf("online: redis: %w", err)
	}
	out := make([]int, len(vals))
	for i, v := range vals {
		out[i] = int(v)
	}
	return out, nil
}

// Healthy reports whether the node can reach Redis: its Pub/Sub connection
// is up and its last heartbeat was answered.
func (b *Broker) Healthy() error {
	if !b.sub.up.Load() {
		return errors.New("redis: subscription connection is down")
	}
	if !b.heartbeatOK.Load() {
		return errors.New("redis: heartbeat failed")
	}
	return nil
}

// Close implements broker.Broker: it stops the Pub/Sub connection and takes
// this node out of presence. The client stays open.
func (b *Broker) Close(ctx context.Context) error {
	var err error
	b.closeOnce.Do(func() {
		close(b.stop)
		b.done.Wait()
		base := b.base
		node := b.node
		chans := b.sub.local()
		cmds := rueidis.Commands{b.client.B().Zrem().Key(b.keys.Key("nodes")).Member(node).Build()}
		for _, ch := range chans {
			cmds = append(cmds, b.client.B().Hdel().Key(base+"o:"+ch).Field(node).Build())
		}
		for _, res := range b.client.DoMulti(ctx, cmds...) {
			if e := res.Error(); e != nil {
				err = fmt.Errorf("close: leaving presence: redis: %w", e)
				break
			}
		}
	})
	return err
}

func (b *Broker) closed() bool {
	select {
	case <-b.stop:
		return true
	default:
		return false
	}
}

func (b *Broker) heartbeatLoop() {
	t := time.NewTicker(b.opt.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		b.heartbeat()
	}
}

// heartbeatBatch bounds the channels one heartbeat script rewrites.
const heartbeatBatch = 1000

// heartbeatMinTimeout is the least time a heartbeat waits for Redis: a
// short interval (tests use 100 ms) must not turn a loaded machine's slow
// answer into "unhealthy". A heartbeat slower than its interval only delays
// the next tick.
const heartbeatMinTimeout = time.Second

func (b *Broker) heartbeat() {
	ctx, cancel := context.WithTimeout(context.Background(), max(b.opt.Heartbeat, heartbeatMinTimeout))
	defer cancel()
	ttl := strconv.FormatInt((3 * b.opt.Heartbeat).Milliseconds(), 10)
	head := []string{b.base, b.node, strconv.FormatInt(b.now().UnixMilli(), 10), ttl}
	// In slices of heartbeatBatch channels: a script blocks Redis while it
	// runs, and a busy node has tens of thousands of channels.
	args := append([]string(nil), head...)
	var err error
	for ch, n := range b.sub.counts() {
		args = append(args, ch, strconv.Itoa(n))
		if len(args)-len(head) == 2*heartbeatBatch {
			if err = heartbeatScript.Exec(ctx, b.client, b.route, args).Error(); err != nil {
				break
			}
			args = append(args[:0], head...)
		}
	}
	if err == nil {
		start := time.Now()
		if err = heartbeatScript.Exec(ctx, b.client, b.route, args).Error(); err == nil {
			b.rtt.Observe(int64(time.Since(start)))
		}
	}
	if was := b.heartbeatOK.Swap(err == nil); was != (err == nil) {
		if err != nil {
			b.log.Warn("redis heartbeat failed; /readyz answers 503 until Redis answers again: check that Redis runs at --redis and is not full", "err", err)
		} else {
			b.log.Info("redis heartbeat answered")
		}
	}
}

func (b *Broker) historyKey(ch channel.ID) string {
	return b.base + "h:" + hex.EncodeToString(ch[:])
}

// lostKey holds the newest mid the channel's history dropped to stay within
// its cap, expiring when that message would have (see publishScript).
func (b *Broker) lostKey(ch channel.ID) string {
	return b.base + "l:" + hex.EncodeToString(ch[:])
}

// channelArgs appends the channels' hex ids to head.
func (b *Broker) channelArgs(head []string, channels []channel.ID) []string {
	args := make([]string, 0, len(head)+len(channels))
	args = append(args, head...)
	for _, ch := range channels {
		args = append(args, hex.EncodeToString(ch[:]))
	}
	return args
}

func randomNodeID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("redis broker: node id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
