package pullclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Transport is how the client reaches the server.
type Transport int

const (
	// Auto uses a WebSocket and falls back to long polling when the
	// WebSocket handshake is refused (a proxy that does not pass upgrades),
	// trying the WebSocket again after RestoreWebSocket.
	Auto Transport = iota
	// WebSocket uses only a WebSocket.
	WebSocket
	// LongPoll uses only long polling.
	LongPoll
)

func (t Transport) String() string {
	switch t {
	case Auto:
		return "auto"
	case WebSocket:
		return "websocket"
	case LongPoll:
		return "long polling"
	}
	return fmt.Sprintf("Transport(%d)", int(t))
}

// Format is the wire format asked for in protocol versions 1 to 3.
type Format int

const (
	// FormatText is the NGINX frames #!NGINXNMS!#{…}#!NGINXNME!#.
	FormatText Format = iota
	// FormatJSON is a JSON array of the same objects (format=json).
	FormatJSON
)

// Backoff bounds the waits between reconnection attempts: Min after the
// first failure, doubling up to Max, each stretched by a random part of up
// to Jitter (0.2: up to 20 % longer) so that many clients cut at once do
// not come back at once. The zero Backoff means DefaultBackoff().
type Backoff struct {
	Min, Max time.Duration
	Jitter   float64
}

// DefaultBackoff starts at the official clients' first delay and stops at
// the core client's longest, with their jitter of up to 20 %.
func DefaultBackoff() Backoff {
	return Backoff{Min: 500 * time.Millisecond, Max: time.Minute, Jitter: 0.2}
}

// Config says where to connect and how. WebSocketURL or LongPollURL, and
// Channels or JWT, are required; the rest have defaults.
type Config struct {
	// WebSocketURL is the subscribe URL for WebSockets (ws:// or wss://),
	// the config's server.websocket. An http(s) URL is taken as ws(s).
	WebSocketURL string
	// LongPollURL is the subscribe URL for long polling (http:// or
	// https://), the config's server.long_polling. Empty: WebSocketURL
	// with the http(s) scheme (pushpull serves both on one path).
	LongPollURL string
	// Version is the protocol version, the config's server.version: 5 uses
	// JSON-RPC, 4 protobuf, anything lower text frames. 0 means 5 when JWT
	// is set, else 3.
	Version int
	// Channels are the signed channel ids to subscribe to ("id.signature",
	// or "private:public.signature"), private first, as the config's
	// channels.private.id and channels.shared.id.
	Channels []string
	// JWT is the version 5 connection token (the config's jwt). It
	// replaces Channels.
	JWT string
	// Format is the wire format for versions below 4.
	Format Format
	// Transport chooses WebSocket, long polling, or both (Auto).
	Transport Transport
	// MID resumes after this message id: the server first replays what
	// was published after it. Empty: live messages only.
	MID string

	// HTTPClient makes the long-poll requests; nil means a new
	// http.Client. It should have no Timeout shorter than a poll (60 s).
	HTTPClient *http.Client
	// Backoff bounds the waits between reconnections.
	Backoff Backoff
	// ServerRestartDelay is the wait before reconnecting after the
	// server_restart command; 0 means the official clients' 15 s.
	ServerRestartDelay time.Duration
	// RestoreWebSocket is how long Auto stays on long polling before it
	// tries a WebSocket again; 0 means the official clients' 30 min.
	RestoreWebSocket time.Duration
	// KeepTrying retries even when the very first connection fails. By
	// default that failure ends Run (and Dial) with its error: a wrong URL
	// should be reported, not retried in silence.
	KeepTrying bool
	// Reload, if set, is called for a fresh config when the server refuses
	// the channels or token (close code 4010, which is what an expired
	// JWT or a rotated channel gets) and when the server asks for it
	// (config_expire, channel_expire with action get_config). Without it a
	// refusal ends the client with ErrRefused.
	Reload func(ctx context.Context) (Config, error)
	// Logger receives debug records of connections; nil discards them.
	Logger *slog.Logger
}

const (
	defaultRestartDelay     = 15 * time.Second
	defaultRestoreWebSocket = 30 * time.Minute
)

// normalized checks c and fills in its defaults.
func (c Config) normalized() (Config, error) {
	if c.JWT == "" && len(c.Channels) == 0 {
		return c, errors.New("pullclient: config has neither channels nor a jwt")
	}
	for _, ch := range c.Channels {
		if ch == "" || strings.ContainsAny(ch, "/ \t\r\n") {
			return c, fmt.Errorf("pullclient: invalid channel id %q", ch)
		}
	}
	if c.Version == 0 {
		c.Version = 3
		if c.JWT != "" {
			c.Version = 5
		}
	}
	if c.JWT != "" && c.Version < 5 {
		return c, fmt.Errorf("pullclient: a jwt needs protocol version 5, not %d", c.Version)
	}
	if c.Format != FormatText && c.Format != FormatJSON {
		return c, fmt.Errorf("pullclient: unknown format %d", c.Format)
	}
	if c.Transport < Auto || c.Transport > LongPoll {
		return c, fmt.Errorf("pullclient: unknown transport %d", c.Transport)
	}
	if c.MID != "" && !validMID(c.MID) {
		return c, fmt.Errorf("pullclient: invalid mid %q: want 26 digits", c.MID)
	}
	var err error
	if c.WebSocketURL == "" && c.LongPollURL == "" {
		return c, errors.New("pullclient: config has no server URL")
	}
	if c.WebSocketURL == "" {
		c.WebSocketURL = c.LongPollURL
	}
	if c.LongPollURL == "" {
		c.LongPollURL = c.WebSocketURL
	}
	if c.WebSocketURL, err = withScheme(c.WebSocketURL, map[string]string{"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}); err != nil {
		return c, err
	}
	if c.LongPollURL, err = withScheme(c.LongPollURL, map[string]string{"ws": "http", "wss": "https", "http": "http", "https": "https"}); err != nil {
		return c, err
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Backoff == (Backoff{}) {
		c.Backoff = DefaultBackoff()
	}
	if c.Backoff.Min <= 0 || c.Backoff.Max < c.Backoff.Min || c.Backoff.Jitter < 0 {
		return c, fmt.Errorf("pullclient: invalid backoff %+v", c.Backoff)
	}
	if c.ServerRestartDelay <= 0 {
		c.ServerRestartDelay = defaultRestartDelay
	}
	if c.RestoreWebSocket <= 0 {
		c.RestoreWebSocket = defaultRestoreWebSocket
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Channels = append([]string(nil), c.Channels...)
	return c, nil
}

// withScheme gives raw the scheme schemes maps its scheme to, and the path
// /sub/ when it has none.
func withScheme(raw string, schemes map[string]string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || schemes[u.Scheme] == "" {
		return "", fmt.Errorf("pullclient: invalid server URL %q: want ws, wss, http or https", raw)
	}
	u.Scheme = schemes[u.Scheme]
	if u.Path == "" || u.Path == "/" {
		u.Path = "/sub/"
	}
	return u.String(), nil
}

// validMID reports whether s is a message id as servers check it: 26
// decimal digits.
func validMID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// SubscribeURL is the URL a connection with these settings requests: base
// with the query the official clients send (CHANNEL_ID or token, jsonRpc or
// binaryMode, format, mid), each value URL-encoded. mid may be empty.
func SubscribeURL(base string, version int, format Format, channels []string, jwt, mid string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	if jwt != "" {
		q.Set("token", jwt)
	} else {
		q.Set("CHANNEL_ID", strings.Join(channels, "/"))
	}
	switch {
	case version >= 5:
		q.Set("jsonRpc", "true")
	case version == 4:
		q.Set("binaryMode", "true")
	case format == FormatJSON:
		q.Set("format", "json")
	}
	if mid != "" {
		q.Set("mid", mid)
	} else {
		q.Del("mid")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ParseConfig reads the answer of pull.application.config.get (or
// pull.config.get): the whole REST answer {"result":{…},"time":{…}} or only
// its result. secure picks the server's *_secure URLs (https, wss), which a
// client outside the server's own network usually needs.
func ParseConfig(data []byte, secure bool) (Config, error) {
	var envelope struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &envelope); err != nil {
		return Config{}, fmt.Errorf("pullclient: config is not JSON: %w", err)
	}
	if len(envelope.Result) > 0 && envelope.Result[0] == '{' {
		data = envelope.Result
	}
	var raw struct {
		Server struct {
			Version           int    `json:"version"`
			Mode              string `json:"mode"`
			LongPolling       string `json:"long_polling"`
			LongPoolingSecure string `json:"long_pooling_secure"` // sic: the protocol's spelling
			WebsocketEnabled  bool   `json:"websocket_enabled"`
			Websocket         string `json:"websocket"`
			WebsocketSecure   string `json:"websocket_secure"`
		} `json:"server"`
		Channels map[string]struct {
			ID string `json:"id"`
		} `json:"channels"`
		JWT      string `json:"jwt"`
		ClientID string `json:"clientId"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("pullclient: config: %w", err)
	}
	// A shared server serves many portals and knows this one by clientId,
	// which every subscribe carries; the official clients refuse a shared
	// config without one.
	if raw.Server.Mode == "shared" {
		if raw.ClientID == "" {
			return Config{}, errors.New("pullclient: config: the server is in shared mode, but the config has no clientId")
		}
		for _, u := range []*string{&raw.Server.LongPolling, &raw.Server.LongPoolingSecure, &raw.Server.Websocket, &raw.Server.WebsocketSecure} {
			*u = withClientID(*u, raw.ClientID)
		}
	}
	c := Config{Version: raw.Server.Version, LongPollURL: raw.Server.LongPolling, JWT: raw.JWT}
	if raw.Server.WebsocketEnabled {
		c.WebSocketURL = raw.Server.Websocket
	}
	if secure {
		c.LongPollURL = raw.Server.LongPoolingSecure
		if raw.Server.WebsocketEnabled {
			c.WebSocketURL = raw.Server.WebsocketSecure
		}
	}
	if !raw.Server.WebsocketEnabled {
		c.Transport = LongPoll
	}
	// Private first, then shared, as the official clients join them.
	for _, kind := range []string{"private", "shared"} {
		if ch, ok := raw.Channels[kind]; ok && ch.ID != "" {
			c.Channels = append(c.Channels, ch.ID)
		}
	}
	// The token is a version 5 credential; below 5 the clients subscribe
	// with the channels.
	if c.Version < 5 {
		c.JWT = ""
	} else if c.JWT != "" {
		c.Channels = nil
	}
	if _, err := c.normalized(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// withClientID adds clientId to a subscribe URL's query; SubscribeURL
// keeps what the base URL's query holds.
func withClientID(base, clientID string) string {
	if base == "" {
		return base
	}
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	q.Set("clientId", clientID)
	u.RawQuery = q.Encode()
	return u.String()
}
