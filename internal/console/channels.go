package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// target is what the operator asked to look at: a channel by any of its
// ids, or a version 5 user's channel.
type target struct {
	ch channel.ID
	// asked is the id the operator typed, when it was a public id that
	// the hub resolved to ch.
	public channel.ID
	viaPub bool
	user   int64 // > 0 for a user
}

var errTarget = errors.New(`give channel=ID (32 lower-case hex characters, a private, shared or public id; "private:public" and a trailing ".signature" are accepted) or user=N (a protocol version 5 user id)`)

// parseTarget reads ?channel= or ?user=. A channel may be pasted in the
// forms clients hold: "id.signature" (shared), "private:public.signature"
// (private with its public id), and a bare id. A public id this node knows
// (a subscriber declared it) is resolved to its private channel.
func (c *Console) parseTarget(r *http.Request) (target, error) {
	q := r.URL.Query()
	if u := q.Get("user"); u != "" {
		n, err := strconv.ParseInt(u, 10, 64)
		if err != nil || n <= 0 {
			return target{}, errTarget
		}
		return target{ch: channel.User(c.opt.Tenant, n), user: n}, nil
	}
	s := strings.TrimSpace(q.Get("channel"))
	if s == "" {
		return target{}, errTarget
	}
	s, _, _ = strings.Cut(s, ".")
	s, _, _ = strings.Cut(s, ":")
	id, err := channel.ParseID(s)
	if err != nil {
		return target{}, errTarget
	}
	if priv, ok := c.opt.Hub.Resolve(message.Receiver{ID: id, Public: true}); ok && priv != id {
		return target{ch: priv, public: id, viaPub: true}, nil
	}
	return target{ch: id}, nil
}

// channelInfo is the answer of GET /console/api/channel.
type channelInfo struct {
	Channel string `json:"channel"`
	// Public is the id asked for when it was a public alias of Channel.
	Public string `json:"public,omitempty"`
	User   int64  `json:"user,omitempty"`
	// Subscribers are this node's connections on the channel; Online is
	// the broker's count over every node.
	Subscribers int `json:"subscribers"`
	Online      int `json:"online"`
	// UserOnline and LastSeen are a version 5 user's presence.
	UserOnline *int    `json:"userOnline,omitempty"`
	LastSeen   *int64  `json:"lastSeen,omitempty"` // unix seconds
	History    []entry `json:"history"`
	// HistoryCut says older stored messages were left out.
	HistoryCut bool `json:"historyCut"`
}

// entry is one message as the console shows it.
type entry struct {
	MID      string          `json:"mid"`
	Created  int64           `json:"created"` // unix milliseconds
	Expiry   uint32          `json:"expiry"`
	Sender   string          `json:"sender"`
	Channel  string          `json:"channel"`
	ModuleID string          `json:"moduleId,omitempty"`
	Command  string          `json:"command,omitempty"`
	Body     json.RawMessage `json:"body,omitempty"` // when it is JSON
	Text     string          `json:"text,omitempty"` // when it is not
	// Users are the version 5 per-user params, keyed by receiver channel.
	Users map[string]json.RawMessage `json:"userParams,omitempty"`
}

// historyShown is how many messages a lookup lists, newest first.
const historyShown = 100

func (c *Console) serveChannel(w http.ResponseWriter, r *http.Request) {
	t, err := c.parseTarget(r)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	ctx := r.Context()
	info := channelInfo{Channel: t.ch.String(), User: t.user, Subscribers: c.opt.Hub.Subscribers(t.ch), History: []entry{}}
	if t.viaPub {
		info.Public = t.public.String()
	}
	online, err := c.opt.Broker.Online(ctx, []channel.ID{t.ch})
	if err != nil {
		writeError(w, http.StatusBadGateway, "BROKER_ERROR", "presence: "+err.Error())
		return
	}
	info.Online = online[0]
	if t.user > 0 {
		seen, err := broker.UsersLastSeen(ctx, c.opt.Broker, c.opt.Tenant, []int64{t.user}, c.opt.Now())
		if err != nil {
			writeError(w, http.StatusBadGateway, "BROKER_ERROR", "presence: "+err.Error())
			return
		}
		n, _ := c.opt.Broker.Online(ctx, []channel.ID{channel.Presence(c.opt.Tenant, t.user)})
		if len(n) == 1 {
			info.UserOnline = &n[0]
		}
		if s, ok := seen[t.user]; ok {
			info.LastSeen = &s
		}
	}
	entries, cut, err := c.newest(r, t.ch, historyShown)
	if err != nil {
		writeError(w, http.StatusBadGateway, "BROKER_ERROR", "history: "+err.Error())
		return
	}
	for i := len(entries) - 1; i >= 0; i-- {
		info.History = append(info.History, toEntry(entries[i].Msg, entries[i].Channel))
	}
	info.HistoryCut = cut
	writeJSON(w, http.StatusOK, info)
}

// historyPages bounds the pages a lookup reads to find the newest
// messages: a channel keeps at most --history-per-channel (1,000 by
// default) messages, read 1,000 at a time.
const historyPages = 20

// newest returns up to n of ch's newest stored messages, oldest first.
// History reads oldest first, so it pages to the end and keeps the tail.
func (c *Console) newest(r *http.Request, ch channel.ID, n int) ([]broker.Entry, bool, error) {
	var keep []broker.Entry
	var after message.ID
	limit := broker.HistoryLimit{PerChannel: 1000, Total: 1000}
	cut := false
	for range historyPages {
		p, err := c.opt.Broker.Recover(r.Context(), []channel.ID{ch}, after, limit)
		if err != nil {
			return nil, false, err
		}
		keep = append(keep, p.Entries...)
		if len(keep) > n {
			keep, cut = keep[len(keep)-n:], true
		}
		if !p.More {
			return keep, cut, nil
		}
		after = p.Next
	}
	return keep, true, nil
}

// toEntry shows a stored message: its body pretty-printed when it is
// JSON (protobuf publishes arrive here already decoded into the same
// Message), as text otherwise, quoted when it is not even UTF-8.
func toEntry(m *message.Message, ch channel.ID) entry {
	e := entry{MID: m.ID.String(), Created: m.Created.UnixMilli(), Expiry: m.Expiry,
		Sender: senderName(m.Sender), Channel: ch.String()}
	body := bytes.TrimSpace(m.Body)
	if json.Valid(body) {
		e.Body = json.RawMessage(body)
		var head struct {
			ModuleID string `json:"module_id"`
			Command  string `json:"command"`
		}
		if json.Unmarshal(body, &head) == nil {
			e.ModuleID, e.Command = head.ModuleID, head.Command
		}
	} else if utf8.Valid(m.Body) {
		e.Text = string(m.Body)
	} else {
		e.Text = strconv.QuoteToASCII(string(m.Body))
	}
	if len(m.UserParams) > 0 {
		e.Users = make(map[string]json.RawMessage, len(m.UserParams))
		for uc, p := range m.UserParams {
			if json.Valid(p) {
				e.Users[uc.String()] = json.RawMessage(p)
			}
		}
	}
	return e
}

func senderName(s message.Sender) string {
	switch s.Type {
	case message.SenderClient:
		if s.UserID > 0 {
			return "client (user " + strconv.FormatInt(s.UserID, 10) + ")"
		}
		return "client " + s.ID.String()
	case message.SenderBackend:
		return "backend"
	}
	return "unknown"
}

// unixMilli is t in unix milliseconds, 0 for the zero time.
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
