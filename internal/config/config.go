// Package config holds the server's one Config struct, its defaults, and
// loading from a JSON file, PUSHPULL_* environment variables and flags, in
// that order of increasing precedence.
package config

import (
	"net/netip"
	"time"
)

// Config is everything `pushpull serve` can be told.
type Config struct {
	// Addr is the HOST:PORT the HTTP listener binds.
	Addr string `json:"addr"`
	// InternalAddr is the listener of the trusted routes (backend publish,
	// JSON-RPC, statistics), which Addr then does not serve: anyone who
	// reaches /pub/ can forge events to every user, and every user learns
	// the shared channel id. It binds loopback by default, as Bitrix
	// deployments keep these routes on an internal port (8895). SameAddr
	// serves them on Addr too, for local development.
	InternalAddr string `json:"internal-addr"`
	// DataDir keeps the generated signature key, the message-id epoch and the
	// history snapshot.
	DataDir string `json:"data-dir"`
	// SignatureKey is the HMAC key shared with the Bitrix backend. Empty means
	// "generate one once and keep it in DataDir".
	SignatureKey string `json:"signature-key"`
	// SignatureAlgo is sha1 (Bitrix's default) or sha256.
	SignatureAlgo string `json:"signature-algo"`
	// PublicURL is how clients reach this server (used in logs and configs).
	PublicURL string `json:"public-url"`
	// TLSCert and TLSKey, PEM files, make Addr serve HTTPS and WSS itself,
	// with no proxy in front. Both or neither. They are read again on
	// SIGHUP, so that a renewed certificate needs no restart.
	TLSCert string `json:"tls-cert"`
	TLSKey  string `json:"tls-key"`
	// InternalTLSCert and InternalTLSKey do the same for InternalAddr,
	// which is plain HTTP without them (it is loopback by default).
	InternalTLSCert string `json:"internal-tls-cert"`
	InternalTLSKey  string `json:"internal-tls-key"`

	// SubPaths are the subscribe prefixes; each serves WebSocket and long polling.
	SubPaths []string `json:"sub-paths"`
	// PubPaths are the backend publish prefixes (trusted: expose internally).
	PubPaths []string `json:"pub-paths"`
	// PubWebPaths are the client publish prefixes (protocol version 4: clients
	// post protobuf to other users' public channels). Bitrix calls this
	// server.publish; deployments route /bitrix/rest/ or /bitrix/pubweb/ here.
	// Not /rest/: that is the REST API.
	PubWebPaths []string `json:"pubweb-paths"`
	// StatPath is the server statistics route (trusted).
	StatPath string `json:"stat-path"`
	// APIPaths are the backend JSON-RPC prefixes of protocol version 5
	// (Bitrix's path_to_json_rpc: publish, users' last-seen); trusted.
	APIPaths []string `json:"api-paths"`

	// MaxPayload caps a published body and an incoming WebSocket message, bytes.
	MaxPayload int64 `json:"max-payload"`
	// MaxChannelsPerRequest caps CHANNEL_ID lists (the reference's 100).
	MaxChannelsPerRequest int `json:"max-channels-per-request"`
	// MessageTTL caps a message's stored lifetime (Message-Expiry), seconds.
	MessageTTL time.Duration `json:"message-ttl"`
	// HistoryPerChannel caps the stored messages kept per channel.
	HistoryPerChannel int `json:"history-per-channel"`
	// HistoryMax caps the stored messages of all channels together (one
	// entry per message and channel); the oldest go first beyond it.
	HistoryMax int `json:"history-max"`
	// HistoryMaxBytes caps the memory the embedded engine's stored
	// messages take (an estimate: bodies plus about 256 bytes each); the
	// oldest go first beyond it. 0: a quarter of physical memory, between
	// 64 MiB and 4 GiB (HistoryBytes).
	HistoryMaxBytes int64 `json:"history-max-bytes"`
	// HistoryChannelMaxBytes caps one channel's stored messages the same
	// way; its oldest go first beyond it. Embedded engine only.
	HistoryChannelMaxBytes int64 `json:"history-channel-max-bytes"`
	// ReplayPerChannel and ReplayTotal cap one recovery (the reference's 100 and 200).
	ReplayPerChannel int `json:"replay-per-channel"`
	ReplayTotal      int `json:"replay-total"`

	// PollTimeout is how long a long-poll request is held before 304.
	PollTimeout time.Duration `json:"poll-timeout"`
	// PingInterval is how often idle WebSockets are pinged; a connection that
	// has not answered the previous ping by the next one is dropped.
	PingInterval time.Duration `json:"ping-interval"`
	// JSONRPCPingInterval is how often version 5 (JSON-RPC) connections get
	// a text ping; the clients reconnect when none comes for 20 s, and the
	// server drops a peer that stays silent for three pings.
	JSONRPCPingInterval time.Duration `json:"jsonrpc-ping-interval"`
	// WriteTimeout bounds one socket write; a peer that cannot take it is dropped.
	WriteTimeout time.Duration `json:"write-timeout"`
	// WriteMergeDelay is how long a WebSocket's messages may be held back
	// so that those sent within it leave in one write; 0: none are.
	WriteMergeDelay time.Duration `json:"write-merge-delay"`
	// SendQueue is the number of deliveries queued per connection before the
	// connection is dropped as a slow consumer.
	SendQueue int `json:"send-queue"`
	// MaxConnPerChannel caps the connections on one user's private channel
	// (the reference's 100); beyond it the oldest is closed with 4029.
	MaxConnPerChannel int `json:"max-conn-per-channel"`
	// ClientPublishRate and ClientPublishBurst limit the messages (one per
	// receiver) a client publishes over one WebSocket connection: so many a
	// second on average, so many at once. A rate of 0: no limit.
	ClientPublishRate  int `json:"client-publish-rate"`
	ClientPublishBurst int `json:"client-publish-burst"`
	// ClientPublishIPRate and ClientPublishIPBurst limit the same for one
	// client address (an IPv6 /64) on the client publish route (HTTP).
	ClientPublishIPRate  int `json:"client-publish-ip-rate"`
	ClientPublishIPBurst int `json:"client-publish-ip-burst"`
	// ClientPublishTargetRate and ClientPublishTargetBurst limit the client
	// messages one channel receives, from all senders together; keep the
	// burst below SendQueue, or a burst can drop its receiver.
	ClientPublishTargetRate  int `json:"client-publish-target-rate"`
	ClientPublishTargetBurst int `json:"client-publish-target-burst"`
	// ShutdownTimeout bounds the drain of a graceful shutdown: requests
	// still running after it are cut. The history snapshot is written after
	// it whatever else was slow.
	ShutdownTimeout time.Duration `json:"shutdown-timeout"`
	// BodyReadTimeout bounds the reading of one request body: a client that
	// trickles it is cut, so that it cannot hold a connection and a handler
	// for ever. Requests without a body (long polls, WebSocket upgrades) are
	// not affected.
	BodyReadTimeout time.Duration `json:"body-read-timeout"`
	// MaxLargeRequests bounds the public requests with a large body (over
	// 64 KiB, or of unknown length) that are read and handled at once; more
	// wait up to BodyReadTimeout, then get 503. 0: sized for the machine
	// (see LargeRequestSlots).
	MaxLargeRequests int `json:"max-large-requests"`
	// LargeRequestRate paces each client address's large public requests:
	// this many a second on average, twice that at once; the rest wait
	// their turn. 0: not paced.
	LargeRequestRate int `json:"large-request-rate"`
	// LargeRequestRateAll paces all addresses' large public requests
	// together, the same way. 0: 100 a second per CPU; -1: not paced.
	LargeRequestRateAll int `json:"large-request-rate-all"`

	// ServerVersion is the push-server version pull.application.config.get
	// advertises: 3 (text frames), 4 (protobuf and client publishing) or 5
	// (JSON-RPC, connection tokens, user routing and online status).
	ServerVersion int `json:"server-version"`
	// PushWebhook, when set, is the http(s) URL each mobile push notification
	// (pull.application.push.add) is POSTed to as JSON, with retries. Empty:
	// notifications are only logged.
	PushWebhook string `json:"push-webhook"`
	// Redis, when set, makes this process a cluster node: message ids,
	// history, fan-out, presence and the registry live in this Redis, shared
	// by every node. Empty: the embedded broker and the SQLite registry.
	Redis string `json:"redis"`
	// RedisPrefix names pushpull's keys in Redis, so that several clusters
	// can share one Redis; every node of a cluster needs the same.
	RedisPrefix string `json:"redis-prefix"`
	// Mode is ModePersonal (one portal: this server's REST side, or one
	// Bitrix installation, sharing the signature key) or ModeShared (many
	// portals, each a tenant with a key of its own; docs/shared-mode.md).
	Mode string `json:"mode"`
	// TenantVerify judges the registrations of shared mode: open (anyone
	// who asks), operator (only `pushpull tenant add`) or url (the verdict
	// of TenantVerifyURL).
	TenantVerify string `json:"tenant-verify"`
	// TenantVerifyURL is the endpoint --tenant-verify=url forwards each
	// registration's verification query to.
	TenantVerifyURL string `json:"tenant-verify-url"`
	// RegisterPaths are shared mode's registration prefixes (public).
	RegisterPaths []string `json:"register-paths"`
	// SystemctlPaths are shared mode's operator command prefixes
	// (trusted, and signed with the server's key).
	SystemctlPaths []string `json:"systemctl-paths"`
	// TenantReload is how often a shared-mode server checks the registry
	// for tenants changed elsewhere (another node, the operator CLI).
	TenantReload time.Duration `json:"tenant-reload"`
	// ConsoleToken is the operator credential of the web console (/console/
	// on the internal listener): its actions (send a test message, revoke a
	// token) need it. Empty: the console is read-only.
	ConsoleToken string `json:"console-token"`
	// ConsoleHosts are the host names the console answers to besides IP
	// addresses and localhost: a page on any other name could be a
	// hostile site whose name was rebound to the console's address.
	ConsoleHosts []string `json:"console-hosts"`
	// TrustedProxies are the addresses (CIDR prefixes or single addresses)
	// of reverse proxies whose X-Forwarded-For is believed.
	TrustedProxies []string `json:"trusted-proxies"`
	// DebugAddr, when set, serves Go's profiler (/debug/pprof/) on its own
	// listener; keep it on loopback.
	DebugAddr string `json:"debug-addr"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log-level"`
}

// The modes.
const (
	ModePersonal = "personal"
	ModeShared   = "shared"
)

// Shared reports whether the server runs in shared mode.
func (c Config) Shared() bool { return c.Mode == ModeShared }

// SameAddr as InternalAddr serves the trusted routes on Addr as well, with
// no second listener: for local development only.
const SameAddr = "same"

// DefaultInternalAddr is where the trusted routes listen unless told
// otherwise: loopback, on the port Bitrix deployments use for them.
const DefaultInternalAddr = "127.0.0.1:8895"

// TrustedOnAddr reports whether Addr serves the trusted routes too.
func (c Config) TrustedOnAddr() bool { return c.InternalAddr == SameAddr }

// TrustedProxyPrefixes parses TrustedProxies, which Validate has checked;
// a single address is a prefix of its full length.
func (c Config) TrustedProxyPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// TLS reports whether Addr serves HTTPS.
func (c Config) TLS() bool { return c.TLSCert != "" }

// InternalTLS reports whether InternalAddr serves HTTPS.
func (c Config) InternalTLS() bool { return c.InternalTLSCert != "" }

// Default returns the configuration of `pushpull serve` with no settings.
func Default() Config {
	return Config{
		Addr:                   ":8080",
		InternalAddr:           DefaultInternalAddr,
		DataDir:                "./data",
		SignatureAlgo:          "sha1",
		SubPaths:               []string{"/sub/", "/subws/", "/bitrix/sub/", "/bitrix/subws/"},
		PubPaths:               []string{"/pub/", "/bitrix/pub/"},
		PubWebPaths:            []string{"/pubweb/", "/bitrix/pubweb/", "/bitrix/rest/"},
		StatPath:               "/server-stat/",
		APIPaths:               []string{"/api/", "/bitrix/api/"},
		MaxPayload:             1 << 20,
		MaxChannelsPerRequest:  100,
		MessageTTL:             86400 * time.Second,
		HistoryPerChannel:      1000,
		HistoryMax:             1_000_000,
		HistoryChannelMaxBytes: 16 << 20,
		ReplayPerChannel:       100,
		ReplayTotal:            200,
		PollTimeout:            40 * time.Second,
		PingInterval:           120 * time.Second,
		JSONRPCPingInterval:    10 * time.Second,
		WriteTimeout:           10 * time.Second,
		SendQueue:              1024,
		MaxConnPerChannel:      100,
		ServerVersion:          4,
		RedisPrefix:            "pushpull",
		ShutdownTimeout:        30 * time.Second,
		BodyReadTimeout:        10 * time.Second,
		LargeRequestRate:       20,
		LogLevel:               "info",
		Mode:                   ModePersonal,
		TenantVerify:           "operator",
		RegisterPaths:          []string{"/register-client/"},
		SystemctlPaths:         []string{"/systemctl/"},
		ConsoleHosts:           []string{},
		TrustedProxies:         []string{},
		TenantReload:           time.Second,

		ClientPublishRate:        50,
		ClientPublishBurst:       500,
		ClientPublishIPRate:      50,
		ClientPublishIPBurst:     500,
		ClientPublishTargetRate:  50,
		ClientPublishTargetBurst: 500,
	}
}
