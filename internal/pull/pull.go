// Package pull implements the pull.* REST methods: the application config
// that tells a client where the push server is and which signed channels to
// listen on, and the event methods that publish into those channels. It
// publishes through the broker like any backend and never touches
// connections.
package pull

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/push"
	"github.com/pushpull/pushpull/internal/rest"
	"github.com/pushpull/pushpull/internal/store"
	"github.com/pushpull/pushpull/internal/token"
)

// ChannelTTL is Bitrix's channel lifetime, 12 hours and 5 seconds; the
// config's end = start + ChannelTTL.
const ChannelTTL = 43205 * time.Second

// API revisions the clients check (b24jssdk PullClient, BX.PullClient).
const (
	revisionWeb    = 19
	revisionMobile = 3
)

// eventExpiry is how long an event waits for a client that reconnects, the
// Bitrix default.
const eventExpiry = 86400

// Publisher is the broker, as far as this package needs it.
type Publisher interface {
	Publish(ctx context.Context, m *message.Message) error
}

// Options configure the methods.
type Options struct {
	// ServerVersion is what the config advertises: 3 (text), 4 (protobuf,
	// client publishing) or 5 (JSON-RPC with a connection token).
	ServerVersion int
	// Tenant is the iss of version 5 tokens: the portal's member_id, which
	// the push server takes as the namespace of user ids.
	Tenant string
	// ClientID, when set, makes the config a shared-mode one
	// (docs/shared-mode.md): server.mode "shared" and this clientId, which
	// the clients then send with every subscribe.
	ClientID string
	// PublicURL is how clients reach the push server, http(s)://host[:port].
	PublicURL string
	// SubPath and PubWebPath are the subscribe and client-publish routes.
	SubPath, PubWebPath string
	// ConfigTimestamp is server.config_timestamp; clients reload their config
	// when it changes, so it must stay stable.
	ConfigTimestamp int64
	// Push receives pull.application.push.add notifications; nil drops them.
	Push push.Notifier
	// Presence answers pull.api.user.getLastSeen; nil: the method knows
	// nobody and answers an empty object.
	Presence broker.Presence
	Now      func() time.Time
	Log      *slog.Logger
}

// Service holds the pull.* methods.
type Service struct {
	st     store.Store
	pub    Publisher
	signer *channel.Signer
	opt    Options
	push   push.Notifier
	// published counts event.add's messages, for the metrics.
	published atomic.Uint64
}

// New returns the methods over st, publishing through pub and signing with signer.
func New(st store.Store, pub Publisher, signer *channel.Signer, opt Options) *Service {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, pub: pub, signer: signer, opt: opt, push: opt.Push}
}

// Published returns how many messages pull.application.event.add has
// published.
func (s *Service) Published() uint64 { return s.published.Load() }

// Register adds the methods to r.
func (s *Service) Register(r *rest.Server) {
	r.Register(rest.Method{Name: "pull.application.config.get", Scope: "pull", Handler: s.configGet})
	r.Register(rest.Method{Name: "pull.application.event.add", Scope: "pull", Handler: s.eventAdd})
	r.Register(rest.Method{Name: "pull.application.push.add", Scope: "pull", Handler: s.pushAdd})
	r.Register(rest.Method{Name: "pull.config.get", Scope: "pull_channel", Handler: s.userConfigGet})
	r.Register(rest.Method{Name: "pull.channel.public.list", Scope: "pull", Handler: s.publicList})
	r.Register(rest.Method{Name: "pull.channel.public.get", Scope: "pull", Handler: s.publicGet})
	r.Register(rest.Method{Name: "pull.api.user.getLastSeen", Scope: "pull", Handler: s.lastSeen})
}

func wrongAuthType() *rest.Error {
	return rest.WrongAuthType("Get access to application config available only for application authorization.")
}

func notConfigured() *rest.Error {
	return rest.NewError(http.StatusInternalServerError, "SERVER_ERROR", "Push & Pull server is not configured")
}

func (s *Service) configGet(ctx context.Context, c rest.Caller, _ rest.Params) (any, error) {
	if c.ClientID == "" {
		return nil, wrongAuthType()
	}
	return s.config(ctx, c)
}

// userConfigGet is pull.config.get: the same config for the user's own
// channels rather than an application's. Bitrix refuses it to OAuth
// applications, which must use pull.application.config.get.
func (s *Service) userConfigGet(ctx context.Context, c rest.Caller, _ rest.Params) (any, error) {
	if c.Kind == rest.KindOAuth {
		return nil, rest.WrongAuthType("Method not available for OAuth authorization.")
	}
	own := c
	own.AppID, own.ClientID = 0, ""
	return s.config(ctx, own)
}

// config builds the config for c's channels: an application's when
// c.ClientID is set, else the user's own (types private and shared).
func (s *Service) config(ctx context.Context, c rest.Caller) (any, error) {
	if c.UserID == 0 {
		return nil, notConfigured()
	}
	now := s.opt.Now()
	priv, err := s.channel(ctx, c, c.UserID, now)
	if err != nil {
		return nil, err
	}
	shared, err := s.channel(ctx, c, 0, now)
	if err != nil {
		return nil, err
	}
	privIDs, err := idsOf(priv)
	if err != nil {
		return nil, err
	}
	sharedIDs, err := idsOf(shared)
	if err != nil {
		return nil, err
	}
	v4 := s.opt.ServerVersion > 3
	privEntry := map[string]any{
		"id": s.signer.SignChannel(privIDs.priv), "public_id": "",
		"start": priv.Start.Format(rest.PHPDateLayout), "end": priv.End.Format(rest.PHPDateLayout), "type": "private",
	}
	if v4 {
		privEntry["id"] = s.signer.SignPrivate(privIDs.priv, privIDs.pub)
		privEntry["public_id"] = s.signer.SignPublic(privIDs.pub)
	}
	var publicChannels any = false
	if v4 {
		own, replaced, err := s.st.PublicChannels(ctx, c.PortalID, 0, []int64{c.UserID}, now, ChannelTTL)
		if err != nil {
			return nil, fmt.Errorf("pull: public channels: %w", err)
		}
		for _, old := range replaced {
			s.channelExpired(ctx, old, nil)
		}
		pc := map[string]any{}
		for uid, ch := range own {
			pc[fmt.Sprint(uid)] = map[string]any{
				"user_id": uid, "public_id": ch.PublicID,
				"signature": s.signer.SignHex("public:" + ch.PublicID),
				"start":     ch.Start.Format(rest.PHPDateLayout), "end": ch.End.Format(rest.PHPDateLayout),
			}
		}
		publicChannels = pc
	}
	res := configResult{
		Server: s.serverBlock(c.Domain),
		API:    map[string]int{"revision_web": revisionWeb, "revision_mobile": revisionMobile},
		Channels: map[string]any{
			"shared": map[string]any{"id": s.signer.SignChannel(sharedIDs.priv),
				"start": shared.Start.Format(rest.PHPDateLayout), "end": shared.End.Format(rest.PHPDateLayout), "type": "shared"},
			"private": privEntry,
		},
		PublicChannels: publicChannels,
		ClientID:       s.opt.ClientID,
		ServerTime:     now.Format(rest.PHPDateLayout),
	}
	if s.opt.ServerVersion >= 5 {
		// The token lists both of the caller's channels, not only the shared
		// one as Bitrix does for users: pushpull is the push server too, so
		// it can route the application's private events to this
		// application's connections rather than to every connection of the
		// user. Like Bitrix's pull module, it lists the private channel's
		// public id right after it, so that the push server takes client
		// publishes to that public id (sendMessageToChannels) for this
		// connection.
		chans := []channel.ID{sharedIDs.priv, privIDs.priv}
		if privIDs.hasPub {
			chans = append(chans, privIDs.pub)
		}
		exp := now.Add(tokenTTL)
		res.JWT = token.Sign(token.Claims{Issuer: s.opt.Tenant, IssuedAt: now, Expires: exp, User: c.UserID,
			Channels: chans}, s.signer.Key())
		res.Exp = exp.Unix()
	}
	return res, nil
}

// tokenTTL is the lifetime of a version 5 connection token, Bitrix's
// default config_ttl; clients fetch a new config before it ends.
const tokenTTL = 12 * time.Hour

// configResult keeps the keys in Bitrix's order.
type configResult struct {
	Server         serverConfig   `json:"server"`
	API            map[string]int `json:"api"`
	Channels       map[string]any `json:"channels"`
	JWT            string         `json:"jwt,omitempty"` // version 5 only
	Exp            int64          `json:"exp,omitempty"`
	PublicChannels any            `json:"publicChannels"`
	ClientID       string         `json:"clientId,omitempty"` // shared mode only
	ServerTime     string         `json:"serverTime"`
}

// serverBlock is the config's server object. A plain-http public URL gets
// https/wss secure variants on the same host, for a TLS proxy in front.
func (s *Service) serverBlock(domain string) serverConfig {
	u, err := url.Parse(s.opt.PublicURL)
	if err != nil || u.Host == "" {
		u = &url.URL{Scheme: "http", Host: domain}
	}
	scheme, wsScheme := "http", "ws"
	if u.Scheme == "https" {
		scheme, wsScheme = "https", "wss"
	}
	at := func(scheme, path string) string { return scheme + "://" + u.Host + path }
	mode := "personal"
	if s.opt.ClientID != "" {
		mode = "shared"
	}
	return serverConfig{
		Version:           s.opt.ServerVersion,
		ServerEnabled:     true,
		Mode:              mode,
		Hostname:          u.Hostname(),
		LongPolling:       at(scheme, s.opt.SubPath),
		LongPoolingSecure: at("https", s.opt.SubPath),
		WebsocketEnabled:  true,
		Websocket:         at(wsScheme, s.opt.SubPath),
		WebsocketSecure:   at("wss", s.opt.SubPath),
		PublishEnabled:    s.opt.ServerVersion > 3,
		Publish:           at(scheme, s.opt.PubWebPath),
		PublishSecure:     at("https", s.opt.PubWebPath),
		ConfigTimestamp:   s.opt.ConfigTimestamp,
	}
}

// serverConfig is the config's server object, keys in Bitrix's order.
type serverConfig struct {
	Version       int    `json:"version"`
	ServerEnabled bool   `json:"server_enabled"`
	Mode          string `json:"mode"`
	Hostname      string `json:"hostname"`
	LongPolling   string `json:"long_polling"`
	// The misspelling is the protocol's own: clients read this key.
	LongPoolingSecure string `json:"long_pooling_secure"`
	WebsocketEnabled  bool   `json:"websocket_enabled"`
	Websocket         string `json:"websocket"`
	WebsocketSecure   string `json:"websocket_secure"`
	PublishEnabled    bool   `json:"publish_enabled"`
	Publish           string `json:"publish"`
	PublishSecure     string `json:"publish_secure"`
	ConfigTimestamp   int64  `json:"config_timestamp"`
}

// channel returns the caller's application channel for user (0: shared),
// rotating an expired one and telling its listeners.
func (s *Service) channel(ctx context.Context, c rest.Caller, user int64, now time.Time) (store.Channel, error) {
	key := store.ChannelKey{PortalID: c.PortalID, AppID: c.AppID, UserID: user, Type: c.ClientID}
	if c.ClientID == "" {
		key.Type = store.TypePrivate
		if user == 0 {
			key.Type = store.TypeShared
		}
	}
	cur, replaced, err := s.st.ChannelFor(ctx, key, now, ChannelTTL)
	if err != nil {
		return store.Channel{}, fmt.Errorf("pull: channel: %w", err)
	}
	if replaced != nil {
		s.channelExpired(ctx, *replaced, &cur)
	}
	return cur, nil
}

// channelExpired publishes channel_expire to a replaced channel so that its
// connected clients follow (docs/protocol.md, "System commands"): application
// channels get action get_config, and the shared one also names its
// successor.
func (s *Service) channelExpired(ctx context.Context, old store.Channel, next *store.Channel) {
	oldID, err := parseStoredID(old.PrivateID)
	if err != nil {
		s.opt.Log.Warn("channel_expire not sent", "err", err)
		return
	}
	params := map[string]any{
		"action":  "get_config",
		"channel": map[string]any{"id": s.signer.SignChannel(oldID), "type": old.Type},
	}
	if old.Type == store.TypeShared {
		params["action"] = "reconnect"
	}
	if old.UserID == 0 && next != nil {
		if nextID, err := parseStoredID(next.PrivateID); err == nil {
			params["new_channel"] = map[string]any{"id": s.signer.SignChannel(nextID),
				"start": next.Start.Format(rest.PHPDateLayout), "end": next.End.Format(rest.PHPDateLayout), "type": next.Type}
		}
	}
	body, err := json.Marshal(eventBody{ModuleID: "pull", Command: "channel_expire", Params: params, Extra: s.extra()})
	if err == nil {
		err = s.pub.Publish(ctx, &message.Message{Body: body, Expiry: eventExpiry,
			Receivers: []message.Receiver{{ID: oldID}}, Sender: message.Sender{Type: message.SenderBackend}})
	}
	if err != nil {
		s.opt.Log.Warn("channel_expire not sent", "channel", old.PrivateID, "err", err)
	}
}

// eventBody is the message envelope, with the Bitrix backend's key order.
type eventBody struct {
	ModuleID string `json:"module_id"`
	Command  string `json:"command"`
	Params   any    `json:"params"`
	Extra    extra  `json:"extra"`
}

type extra struct {
	ServerTime     string  `json:"server_time"`
	ServerTimeUnix float64 `json:"server_time_unix"`
	ServerName     string  `json:"server_name"`
	RevisionWeb    int     `json:"revision_web"`
	RevisionMobile int     `json:"revision_mobile"`
}

func (s *Service) extra() extra {
	now := s.opt.Now()
	return extra{
		ServerTime: now.Format(rest.PHPDateLayout), ServerTimeUnix: float64(now.UnixMicro()) / 1e6,
		ServerName: hostOf(s.opt.PublicURL), RevisionWeb: revisionWeb, RevisionMobile: revisionMobile,
	}
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return strings.TrimSpace(raw)
}

// parseStoredID parses a channel id the store generated; a failure means a
// corrupt registry.
func parseStoredID(s string) (channel.ID, error) {
	id, err := channel.ParseID(s)
	if err != nil {
		return id, fmt.Errorf("pull: registry holds a bad channel id %q: %w", s, err)
	}
	return id, nil
}

// signed holds a channel's ids, parsed.
type signed struct {
	priv, pub channel.ID
	hasPub    bool
}

func idsOf(ch store.Channel) (signed, error) {
	var out signed
	var err error
	if out.priv, err = parseStoredID(ch.PrivateID); err != nil {
		return out, err
	}
	if ch.PublicID != "" {
		out.pub, err = parseStoredID(ch.PublicID)
		out.hasPub = err == nil
	}
	return out, err
}
