package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// sendRequest is the body of POST /console/api/send.
type sendRequest struct {
	// Channels are channel ids (any form parseTarget takes); Users are
	// protocol version 5 user ids.
	Channels []string        `json:"channels"`
	Users    []int64         `json:"users"`
	ModuleID string          `json:"moduleId"`
	Command  string          `json:"command"`
	Params   json.RawMessage `json:"params"`
	// Expiry is the message's time to live in seconds; 0 is live only.
	Expiry *int64 `json:"expiry"`
}

// maxReceivers matches the push server's per-request channel bound.
const maxReceivers = 100

// The patterns of Bitrix's pull module for module ids and commands, as
// pull.application.event.add checks them.
var (
	moduleIDPattern = regexp.MustCompile(`^[a-z0-9._]+\z`)
	commandPattern  = regexp.MustCompile(`^[0-9A-Za-z_:|.\-]+\z`)
)

// sendBody is the event envelope every client reads: module_id, command,
// params and extra.server_time_unix (the clients drop events without it
// as stale).
type sendBody struct {
	ModuleID string          `json:"module_id"`
	Command  string          `json:"command"`
	Params   json.RawMessage `json:"params"`
	Extra    sendExtra       `json:"extra"`
}

type sendExtra struct {
	ServerTime     string  `json:"server_time"`
	ServerTimeUnix float64 `json:"server_time_unix"`
	Sender         string  `json:"sender"`
}

// serveSend publishes a test message through the broker, as a backend
// would, and answers its mid.
func (c *Console) serveSend(w http.ResponseWriter, r *http.Request) {
	var in sendRequest
	if err := decodeJSON(r, &in); err != nil {
		badRequest(w, err.Error())
		return
	}
	m, err := c.buildMessage(in)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	if err := c.opt.Broker.Publish(r.Context(), m); err != nil {
		if errors.Is(err, broker.ErrTooLarge) {
			badRequest(w, err.Error())
			return
		}
		writeError(w, http.StatusBadGateway, "BROKER_ERROR", "publish: "+err.Error())
		return
	}
	c.opt.Log.Info("console: test message sent", "mid", m.ID.String(), "receivers", len(m.Receivers), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"mid": m.ID.String(), "receivers": len(m.Receivers)})
}

func (c *Console) buildMessage(in sendRequest) (*message.Message, error) {
	if !moduleIDPattern.MatchString(in.ModuleID) {
		return nil, errors.New("moduleId: lower-case letters, digits, '.' and '_' only, not empty")
	}
	if !commandPattern.MatchString(in.Command) {
		return nil, errors.New("command: letters, digits and _:|.- only, not empty")
	}
	params := json.RawMessage("{}")
	if p := strings.TrimSpace(string(in.Params)); p != "" && p != "null" {
		if p[0] != '{' && p[0] != '[' {
			return nil, errors.New("params: a JSON object or array")
		}
		params = json.RawMessage(p)
	}
	if in.Expiry == nil {
		return nil, errors.New("expiry: seconds the message stays replayable, 0 for live only")
	}
	maxExpiry := int64(c.opt.MessageTTL / time.Second)
	if *in.Expiry < 0 || (maxExpiry > 0 && *in.Expiry > maxExpiry) {
		return nil, fmt.Errorf("expiry: from 0 to %d seconds (--message-ttl)", maxExpiry)
	}
	if n := len(in.Channels) + len(in.Users); n == 0 || n > maxReceivers {
		return nil, fmt.Errorf("give from 1 to %d channels and users in all", maxReceivers)
	}
	m := &message.Message{Expiry: uint32(*in.Expiry), Sender: message.Sender{Type: message.SenderBackend}}
	seen := map[channel.ID]bool{}
	add := func(id channel.ID) {
		if !seen[id] {
			seen[id] = true
			m.Receivers = append(m.Receivers, message.Receiver{ID: id})
		}
	}
	for _, s := range in.Channels {
		id, err := parseChannel(s)
		if err != nil {
			return nil, fmt.Errorf("channels: %q: %w", s, err)
		}
		if priv, ok := c.opt.Hub.Resolve(message.Receiver{ID: id, Public: true}); ok {
			id = priv
		}
		add(id)
	}
	for _, u := range in.Users {
		if u <= 0 {
			return nil, fmt.Errorf("users: %d is not a user id", u)
		}
		add(channel.User(c.opt.Tenant, u))
	}
	now := c.opt.Now()
	body, err := json.Marshal(sendBody{ModuleID: in.ModuleID, Command: in.Command, Params: params,
		Extra: sendExtra{ServerTime: now.Format(time.RFC3339), ServerTimeUnix: float64(now.UnixMicro()) / 1e6, Sender: "console"}})
	if err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	m.Body = body
	return m, nil
}

// parseChannel reads a channel id in the forms clients hold (see
// parseTarget); a public id that this node knows is sent to its private
// channel.
func parseChannel(s string) (channel.ID, error) {
	s = strings.TrimSpace(s)
	s, _, _ = strings.Cut(s, ".")
	s, _, _ = strings.Cut(s, ":")
	return channel.ParseID(s)
}
