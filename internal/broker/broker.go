// Package broker defines how messages are published, stored for recovery and
// fanned out, and which channels are online. Engines live in sub-packages:
// memory (embedded, the default) and redis (cluster).
package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// Deliverer receives published messages for local subscribers. The hub
// implements it. Deliver must not block: it only queues. An engine delivers
// each message once, in id order, and at least every message for the
// channels attached on this node (the embedded engine delivers all).
type Deliverer interface {
	Deliver(m *message.Message)
}

// Entry is one stored message as found in one channel's history. A message
// published to several channels is one Entry per channel.
type Entry struct {
	Msg     *message.Message
	Channel channel.ID
}

// HistoryLimit bounds one read of history. The reference server replays at
// most 100 messages per channel and 200 in all; a read keeps the oldest, so
// that reading again after its last message continues without a gap.
type HistoryLimit struct {
	PerChannel int
	Total      int
}

// Page is one read of history after a mid.
type Page struct {
	// Entries are the oldest stored entries after the mid, ascending by id.
	// They are a complete prefix: every stored entry of the channels up to
	// the last one is included, and a message's entries are never split
	// between two pages.
	Entries []Entry
	// More reports that newer entries are stored: read again after Next.
	More bool
	// Next is the id this page covers up to; with More, the next read
	// starts after it (it may be newer than the last entry when entries
	// expired meanwhile).
	Next message.ID
	// Lost is the newest id, newer than the mid read after, of a message
	// that LostChannel dropped before its expiry to bound history: the
	// reader missed it and everything older in that channel. Zero if no
	// message after the mid was dropped. Messages that expired are not lost:
	// their sender said they stop mattering.
	Lost        message.ID
	LostChannel channel.ID
}

// ErrClosed is returned by a broker that has been closed.
var ErrClosed = errors.New("broker is closed")

// ErrTooLarge is returned by Publish for a message whose payload is larger
// than the engine's maximum. Every route publishes through an engine, so
// this is where every stored body is bounded, whatever encoding (escaping,
// user params) made it grow on its way.
var ErrTooLarge = errors.New("message is larger than the maximum payload")

// PayloadSize is what a message stores besides its fixed fields: the body,
// the dictionary and every user's params.
func PayloadSize(m *message.Message) int64 {
	n := int64(len(m.Body) + len(m.Dictionary))
	for _, p := range m.UserParams {
		n += int64(len(p))
	}
	return n
}

// CheckPayload returns an error wrapping ErrTooLarge if m's payload is over
// limit bytes; limit 0 means no limit. Engines call it first in Publish.
func CheckPayload(m *message.Message, limit int64) error {
	if n := PayloadSize(m); limit > 0 && n > limit {
		return fmt.Errorf("publish: %w: %d bytes, the maximum is %d", ErrTooLarge, n, limit)
	}
	return nil
}

// Broker assigns message ids, keeps history and presence, and fans messages out
// to the Deliverer of every node that has subscribers for them.
type Broker interface {
	// Publish assigns m.ID and m.Created, stores m for replay, and fans it
	// out. A message with m.Expiry 0 is live only: an engine keeps it at most
	// for a short retention window. Publish returns once the message is
	// stored: an error means nothing was stored or delivered. A message
	// over the engine's maximum payload is refused with ErrTooLarge.
	Publish(ctx context.Context, m *message.Message) error
	// NewID assigns an id without publishing, for messages the server makes
	// for its own connections (server_restart).
	NewID(ctx context.Context) (message.ID, error)
	// History returns the stored messages newer than after in channels,
	// ascending by id, bounded by limit (the oldest are kept): Recover's
	// entries.
	History(ctx context.Context, channels []channel.ID, after message.ID, limit HistoryLimit) ([]Entry, error)
	// Recover reads one page of what a client missed after its mid: the
	// oldest entries first, whether more follow, and whether the history
	// dropped messages the client never got.
	Recover(ctx context.Context, channels []channel.ID, after message.ID, limit HistoryLimit) (Page, error)
	// LastID returns the newest stored id in channels; ok is false if none.
	LastID(ctx context.Context, channels []channel.ID) (id message.ID, ok bool, err error)
	// Attach and Detach count one local connection on channels: presence,
	// and in a cluster the interest that routes messages to this node.
	Attach(ctx context.Context, channels []channel.ID) error
	Detach(ctx context.Context, channels []channel.ID) error
	// Online returns the number of connections on each channel, in order.
	Online(ctx context.Context, channels []channel.ID) ([]int, error)
	// SetLastSeen records when users were last seen (protocol version 5's
	// getUsersLastSeen), replacing what was recorded before. Users are keyed
	// by their channel.User id, which includes the tenant. Times are kept
	// at second precision.
	SetLastSeen(ctx context.Context, seen map[channel.ID]time.Time) error
	// LastSeen returns the recorded times of those of users that have one;
	// users never recorded are absent from the map.
	LastSeen(ctx context.Context, users []channel.ID) (map[channel.ID]time.Time, error)
	// Close stops the broker; the embedded engine snapshots its history.
	Close(ctx context.Context) error
}
