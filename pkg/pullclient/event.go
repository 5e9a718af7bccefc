package pullclient

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Event is what the client reports: Connected, Disconnected, Skipped, Message, or
// one of the commands the server and the backend send to clients
// (ServerRestart, ConfigExpire, ChannelExpire, UserStatus), which carry
// their Message too.
type Event interface{ event() }

// Connected reports a connection that is up: a WebSocket after its
// handshake (the server subscribes it before it answers), a long poll once
// the server answered it or has held it for a while.
type Connected struct {
	Transport Transport // WebSocket or LongPoll
	// MID is the id the connection resumed after; empty for live only.
	MID string
}

// Disconnected reports a lost or failed connection that the client will
// try again after Retry.
type Disconnected struct {
	Err   error
	Retry time.Duration
	// Restarting is set when the wait is ServerRestartDelay because the
	// server said server_restart.
	Restarting bool
}

// Skipped reports a delivery, or part of one, that could not be decoded
// and was skipped, as the official clients skip it.
type Skipped struct{ Err error }

// SenderType says who published a message.
type SenderType int

// Sender types, as protocol versions 4 and 5 carry them.
const (
	SenderUnknown SenderType = 0
	SenderClient  SenderType = 1 // another client (a client publish)
	SenderBackend SenderType = 2 // a backend (REST event.add, /pub/, /api/)
)

// Sender is the publisher of a message: its type and, for a client, its id
// (a public channel id in hex, or a version 5 user id).
type Sender struct {
	Type SenderType
	ID   string
}

// Message is one delivered message. Body is the message as published; the
// fields after it are read from it when it is the usual envelope
// {"module_id":…,"command":…,"params":…,"extra":…}.
type Message struct {
	// MID is the message id: 26 digits, increasing.
	MID string
	// Channel is the channel it came through (text formats only; "-" from
	// a Push server 2.x).
	Channel string
	// Created is when the server stored it (text formats to the
	// millisecond, protobuf to the second; zero in version 5).
	Created time.Time
	// Expiry is how long the server keeps it (protobuf only; 0: live only
	// or unknown).
	Expiry time.Duration
	// Sender is who published it (versions 4 and 5).
	Sender Sender

	Body     json.RawMessage
	ModuleID string // lower-cased, as the official clients do
	Command  string
	Params   json.RawMessage
	Extra    json.RawMessage

	// UserParams and Dictionary are version 5's per-user and shared
	// additions, which the official clients merge into params.
	UserParams json.RawMessage
	Dictionary json.RawMessage
}

// ServerRestart is the server_restart command: the server is stopping, and
// the client reconnects after ServerRestartDelay.
type ServerRestart struct{ Message }

// ConfigExpire is the config_expire command: the backend's settings
// changed; the client calls Config.Reload, if set, and reconnects.
type ConfigExpire struct{ Message }

// ChannelExpire is the channel_expire command: a channel was replaced.
// With Action "reconnect" and a NewChannel the client swaps the channel
// and reconnects by itself; otherwise ("get_config") it calls
// Config.Reload, if set.
type ChannelExpire struct {
	Message
	Action     string
	Channel    ExpiredChannel
	NewChannel *ExpiredChannel
}

// ExpiredChannel is a channel named by channel_expire.
type ExpiredChannel struct {
	ID   string `json:"id"` // signed, as in Config.Channels
	Type string `json:"type"`
}

// UserStatus is the online/userStatusChange event of version 5: a user the
// connection watches came online or went offline.
type UserStatus struct {
	Message
	UserID int64
	Online bool
}

func (Connected) event()     {}
func (Disconnected) event()  {}
func (Skipped) event()       {}
func (Message) event()       {}
func (ServerRestart) event() {}
func (ConfigExpire) event()  {}
func (ChannelExpire) event() {}
func (UserStatus) event()    {}

// fillBody sets m.Body and the envelope fields read from it.
func (m *Message) fillBody(body []byte) {
	m.Body = json.RawMessage(bytes.Clone(body))
	var env struct {
		ModuleID string          `json:"module_id"`
		Command  string          `json:"command"`
		Params   json.RawMessage `json:"params"`
		Extra    json.RawMessage `json:"extra"`
	}
	if json.Unmarshal(m.Body, &env) != nil {
		return
	}
	m.ModuleID, m.Command = strings.ToLower(env.ModuleID), env.Command
	m.Params, m.Extra = env.Params, env.Extra
}

// typed turns a message into the event it is: a system command the
// official clients act on, or a Message.
func typed(m Message) Event {
	switch m.ModuleID {
	case "pull":
		switch strings.ToLower(m.Command) {
		case "server_restart":
			return ServerRestart{m}
		case "config_expire":
			return ConfigExpire{m}
		case "channel_expire":
			e := ChannelExpire{Message: m}
			var p struct {
				Action     string          `json:"action"`
				Channel    ExpiredChannel  `json:"channel"`
				NewChannel *ExpiredChannel `json:"new_channel"`
			}
			if json.Unmarshal(m.Params, &p) == nil {
				e.Action, e.Channel, e.NewChannel = p.Action, p.Channel, p.NewChannel
			}
			return e
		}
	case "online":
		if strings.EqualFold(m.Command, "userStatusChange") {
			var p struct {
				UserID json.Number `json:"user_id"`
				Online bool        `json:"online"`
			}
			if json.Unmarshal(m.Params, &p) == nil {
				if id, err := p.UserID.Int64(); err == nil {
					return UserStatus{Message: m, UserID: id, Online: p.Online}
				}
			}
		}
	}
	return m
}
