package config

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// setting describes one Config field once, so that its JSON key, flag,
// environment variable and help text cannot drift apart. A test checks that
// every field of Config has exactly one.
type setting struct {
	name  string // the json tag, which is also the flag name and (see envName) the env suffix
	arg   string // the placeholder for the value in help
	usage string
	// field points into c at the field: a *string, *[]string, *int, *int64
	// (a size in bytes) or *time.Duration.
	field func(c *Config) any
}

// The names Validate and its tests refer to.
const (
	addr                  = "addr"
	dataDir               = "data-dir"
	internalAddr          = "internal-addr"
	signatureKey          = "signature-key"
	signatureAlgo         = "signature-algo"
	publicURL             = "public-url"
	tlsCert               = "tls-cert"
	tlsKey                = "tls-key"
	internalTLSCert       = "internal-tls-cert"
	internalTLSKey        = "internal-tls-key"
	subPaths              = "sub-paths"
	pubPaths              = "pub-paths"
	pubWebPaths           = "pubweb-paths"
	statPath              = "stat-path"
	apiPaths              = "api-paths"
	jsonRPCPingInterval   = "jsonrpc-ping-interval"
	maxPayload            = "max-payload"
	maxChannelsPerRequest = "max-channels-per-request"
	messageTTL            = "message-ttl"
	historyPerChannel     = "history-per-channel"
	historyMax            = "history-max"
	historyMaxBytes       = "history-max-bytes"
	historyChanMaxBytes   = "history-channel-max-bytes"
	replayPerChannel      = "replay-per-channel"
	replayTotal           = "replay-total"
	pollTimeout           = "poll-timeout"
	pingInterval          = "ping-interval"
	writeTimeout          = "write-timeout"
	writeMergeDelay       = "write-merge-delay"
	sendQueue             = "send-queue"
	maxConnPerChannel     = "max-conn-per-channel"
	shutdownTimeout       = "shutdown-timeout"
	bodyReadTimeout       = "body-read-timeout"
	maxLargeRequests      = "max-large-requests"
	largeRequestRate      = "large-request-rate"
	largeRequestRateAll   = "large-request-rate-all"
	logLevel              = "log-level"
	debugAddr             = "debug-addr"
	serverVersion         = "server-version"
	pushWebhook           = "push-webhook"
	redisURL              = "redis"
	redisPrefix           = "redis-prefix"
	consoleToken          = "console-token"
	consoleHosts          = "console-hosts"
	trustedProxies        = "trusted-proxies"

	mode                     = "mode"
	tenantVerify             = "tenant-verify"
	tenantVerifyURL          = "tenant-verify-url"
	registerPaths            = "register-paths"
	systemctlPaths           = "systemctl-paths"
	tenantReload             = "tenant-reload"
	clientPublishRate        = "client-publish-rate"
	clientPublishBurst       = "client-publish-burst"
	clientPublishIPRate      = "client-publish-ip-rate"
	clientPublishIPBurst     = "client-publish-ip-burst"
	clientPublishTargetRate  = "client-publish-target-rate"
	clientPublishTargetBurst = "client-publish-target-burst"
)

func settings() []setting {
	return []setting{
		{addr, "HOST:PORT", "address the HTTP listener binds",
			func(c *Config) any { return &c.Addr }},
		{internalAddr, "HOST:PORT|same", `the only listener of the trusted routes (backend publish /pub/ and /api/, /server-stat/); keep it off the internet; "same": serve them on --addr too (local development only)`,
			func(c *Config) any { return &c.InternalAddr }},
		{dataDir, "DIR", "directory for the generated signature key, the message-id epoch and the history snapshot",
			func(c *Config) any { return &c.DataDir }},
		{signatureKey, "KEY", "HMAC key shared with the Bitrix backend; empty: generate one once and keep it in the data dir",
			func(c *Config) any { return &c.SignatureKey }},
		{signatureAlgo, "sha1|sha256", "HMAC hash of channel signatures",
			func(c *Config) any { return &c.SignatureAlgo }},
		{publicURL, "URL", "http(s) URL clients reach this server at",
			func(c *Config) any { return &c.PublicURL }},
		{tlsCert, "FILE", "PEM certificate (chain) for serving HTTPS and WSS on --addr; read again on SIGHUP; empty: plain HTTP",
			func(c *Config) any { return &c.TLSCert }},
		{tlsKey, "FILE", "PEM private key of --tls-cert",
			func(c *Config) any { return &c.TLSKey }},
		{internalTLSCert, "FILE", "PEM certificate (chain) for serving HTTPS on --internal-addr; read again on SIGHUP; empty: plain HTTP",
			func(c *Config) any { return &c.InternalTLSCert }},
		{internalTLSKey, "FILE", "PEM private key of --internal-tls-cert",
			func(c *Config) any { return &c.InternalTLSKey }},
		{subPaths, "PATH,...", "subscribe prefixes, each serving WebSocket and long polling",
			func(c *Config) any { return &c.SubPaths }},
		{pubPaths, "PATH,...", "backend publish prefixes (trusted: expose internally only)",
			func(c *Config) any { return &c.PubPaths }},
		{pubWebPaths, "PATH,...", "client publish prefixes (protocol version 4, public channels)",
			func(c *Config) any { return &c.PubWebPaths }},
		{statPath, "PATH", "server statistics route (trusted)",
			func(c *Config) any { return &c.StatPath }},
		{apiPaths, "PATH,...", "backend JSON-RPC prefixes (protocol version 5; trusted: expose internally only)",
			func(c *Config) any { return &c.APIPaths }},
		{maxPayload, "BYTES", "largest published body or incoming WebSocket message; suffixes KiB, MiB, GiB",
			func(c *Config) any { return &c.MaxPayload }},
		{maxChannelsPerRequest, "N", "most channels in one CHANNEL_ID list",
			func(c *Config) any { return &c.MaxChannelsPerRequest }},
		{messageTTL, "DURATION", "longest a message is stored (caps Message-Expiry)",
			func(c *Config) any { return &c.MessageTTL }},
		{historyPerChannel, "N", "most messages stored per channel",
			func(c *Config) any { return &c.HistoryPerChannel }},
		{historyMax, "N", "stored messages kept for all channels together (about 1 KiB plus the body each); the oldest go first",
			func(c *Config) any { return &c.HistoryMax }},
		{historyMaxBytes, "BYTES", "memory the stored messages may take (bodies plus about 256 bytes each), embedded engine; the oldest go first; 0: a quarter of physical memory, 64 MiB to 4 GiB",
			func(c *Config) any { return &c.HistoryMaxBytes }},
		{historyChanMaxBytes, "BYTES", "bytes one channel's stored messages may take, embedded engine and Redis; its oldest go first",
			func(c *Config) any { return &c.HistoryChannelMaxBytes }},
		{replayPerChannel, "N", "most messages replayed per channel on one recovery",
			func(c *Config) any { return &c.ReplayPerChannel }},
		{replayTotal, "N", "most messages replayed in all on one recovery",
			func(c *Config) any { return &c.ReplayTotal }},
		{pollTimeout, "DURATION", "how long a long poll is held before 304",
			func(c *Config) any { return &c.PollTimeout }},
		{pingInterval, "DURATION", "how often idle WebSockets are pinged",
			func(c *Config) any { return &c.PingInterval }},
		{jsonRPCPingInterval, "DURATION", "how often protocol version 5 connections get a text ping (under 20s, when clients give up)",
			func(c *Config) any { return &c.JSONRPCPingInterval }},
		{writeTimeout, "DURATION", "longest one socket write may take",
			func(c *Config) any { return &c.WriteTimeout }},
		{writeMergeDelay, "DURATION", "latency a WebSocket's messages may be held back to leave in one write: a socket is written at most once per delay, the first message after a quiet spell at once; 0: no holding. Fewer system calls per delivery on a saturated node",
			func(c *Config) any { return &c.WriteMergeDelay }},
		{sendQueue, "N", "deliveries queued per connection before it is dropped as a slow consumer",
			func(c *Config) any { return &c.SendQueue }},
		{maxConnPerChannel, "N", "connections allowed on one user's private channel; the oldest is closed with 4029 beyond it",
			func(c *Config) any { return &c.MaxConnPerChannel }},
		{clientPublishRate, "N", "messages a second (one per receiver) a client may publish over one WebSocket, on average; 0: no limit",
			func(c *Config) any { return &c.ClientPublishRate }},
		{clientPublishBurst, "N", "messages a client may publish over one WebSocket at once",
			func(c *Config) any { return &c.ClientPublishBurst }},
		{clientPublishIPRate, "N", "messages a second one client address (IPv6: its /64) may publish through the client publish route; 0: no limit; behind a proxy all clients share its address",
			func(c *Config) any { return &c.ClientPublishIPRate }},
		{clientPublishIPBurst, "N", "messages one client address may publish through the client publish route at once",
			func(c *Config) any { return &c.ClientPublishIPBurst }},
		{clientPublishTargetRate, "N", "client messages a second one channel may receive from all senders together; 0: no limit",
			func(c *Config) any { return &c.ClientPublishTargetRate }},
		{clientPublishTargetBurst, "N", "client messages one channel may receive at once; keep it below --send-queue",
			func(c *Config) any { return &c.ClientPublishTargetBurst }},
		{shutdownTimeout, "DURATION", "longest a graceful shutdown waits for connections and requests before it cuts them; the history is saved after it",
			func(c *Config) any { return &c.ShutdownTimeout }},
		{bodyReadTimeout, "DURATION", "longest the reading of one request body may take; a slower client is cut",
			func(c *Config) any { return &c.BodyReadTimeout }},
		{maxLargeRequests, "N", "public requests with a body over 64 KiB (or of unknown length) read and handled at once; more wait up to --body-read-timeout, then get 503 with Retry-After; 0: twice the number of CPUs",
			func(c *Config) any { return &c.MaxLargeRequests }},
		{largeRequestRate, "N", "large public requests (as for --max-large-requests) one client address may send a second, twice that at once; more wait their turn, or past --body-read-timeout get 503; 0: unpaced",
			func(c *Config) any { return &c.LargeRequestRate }},
		{largeRequestRateAll, "N", "large public requests all addresses together may send a second, twice that at once; more wait their turn, or past --body-read-timeout get 503; 0: 100 per CPU; -1: unpaced",
			func(c *Config) any { return &c.LargeRequestRateAll }},
		{serverVersion, "3|4|5", "push-server version pull.application.config.get advertises to clients",
			func(c *Config) any { return &c.ServerVersion }},
		{pushWebhook, "URL", "http(s) URL mobile push notifications are POSTed to as JSON, with retries; empty: only log them",
			func(c *Config) any { return &c.PushWebhook }},
		{redisURL, "URL", "run as a cluster node on this Redis or Valkey (ids, history, fan-out, presence, registry): redis://[:password@]host:port[/db], rediss:// for TLS, ?master_set=NAME for Sentinel, ?addr=host:port for more Cluster nodes; empty: embedded",
			func(c *Config) any { return &c.Redis }},
		{redisPrefix, "NAME", "prefix of pushpull's keys in Redis; nodes of one cluster share it",
			func(c *Config) any { return &c.RedisPrefix }},
		{mode, "personal|shared", "personal: one portal, one key; shared: many portals, each a tenant (clientId, host) with a key derived from --signature-key",
			func(c *Config) any { return &c.Mode }},
		{tenantVerify, "open|operator|url", "shared mode's registrations: open registers any portal that asks, operator only those added with pushpull tenant add, url asks --tenant-verify-url",
			func(c *Config) any { return &c.TenantVerify }},
		{tenantVerifyURL, "URL", "http(s) endpoint each registration's verification query is POSTed to (--tenant-verify=url); it answers in the Bitrix licence server's JSON",
			func(c *Config) any { return &c.TenantVerifyURL }},
		{registerPaths, "PATH,...", "shared mode's registration prefixes (POST /register-client/)",
			func(c *Config) any { return &c.RegisterPaths }},
		{systemctlPaths, "PATH,...", "shared mode's operator command prefixes (POST /systemctl/, signed with the server's key; trusted)",
			func(c *Config) any { return &c.SystemctlPaths }},
		{tenantReload, "DURATION", "how often a shared-mode server checks the registry for tenants added or removed elsewhere",
			func(c *Config) any { return &c.TenantReload }},
		{consoleToken, "TOKEN", "operator credential of the web console at /console/ on the internal listener (at least 16 characters); empty: the console is read-only",
			func(c *Config) any { return &c.ConsoleToken }},
		{consoleHosts, "NAME,...", "host names the web console answers to besides IP addresses and localhost (a name reaching it through a tunnel or proxy); others are refused, against DNS rebinding",
			func(c *Config) any { return &c.ConsoleHosts }},
		{trustedProxies, "CIDR,...", "reverse proxies whose X-Forwarded-For names the client: its address then counts for per-address limits and logs; empty: the peer's own address",
			func(c *Config) any { return &c.TrustedProxies }},
		{debugAddr, "HOST:PORT", "serve Go's profiler (/debug/pprof/) here; empty: off; keep it on loopback",
			func(c *Config) any { return &c.DebugAddr }},
		{logLevel, "LEVEL", "debug, info, warn or error",
			func(c *Config) any { return &c.LogLevel }},
	}
}

// setString sets the field from the text of a flag or an environment
// variable; name is how the user spelled the setting, for the error.
func (s setting) setString(c *Config, name, v string) error {
	if reason := s.setText(c, v); reason != "" {
		return &Error{Name: name, Value: v, Reason: reason}
	}
	return nil
}

// setText parses v into the field and returns why it cannot, or "".
func (s setting) setText(c *Config, v string) (reason string) {
	switch p := s.field(c).(type) {
	case *string:
		*p = v
	case *[]string:
		*p = splitList(v)
	case *int:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return "want a whole number"
		}
		*p = n
	case *int64:
		n, err := parseSize(strings.TrimSpace(v))
		if err != nil {
			return "want a number of bytes, optionally with KiB, MiB or GiB"
		}
		*p = n
	case *time.Duration:
		d, err := parseDuration(strings.TrimSpace(v))
		if err != nil {
			return `want a duration like "40s" or "1m30s", or whole seconds`
		}
		*p = d
	default:
		panic(fmt.Sprintf("config: setting %s has unsupported type %T", s.name, p))
	}
	return ""
}

// setJSON sets the field from its value in the config file. Numbers, lists
// and durations may also be given as strings, read like the flag's text.
func (s setting) setJSON(c *Config, file string, raw json.RawMessage) error {
	bad := func(reason string) error {
		return &Error{Name: s.name, File: file, Value: string(raw), Reason: reason}
	}
	var str string
	isString := json.Unmarshal(raw, &str) == nil
	if isString {
		if _, plain := s.field(c).(*string); !plain {
			if reason := s.setText(c, str); reason != "" {
				return bad(reason)
			}
			return nil
		}
	}
	switch p := s.field(c).(type) {
	case *string:
		if !isString {
			return bad("want a string")
		}
		*p = str
	case *[]string:
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil || list == nil {
			return bad(`want a list of strings like ["/sub/"]`)
		}
		*p = list
	case *int:
		n, err := strconv.Atoi(string(raw))
		if err != nil {
			return bad("want a whole number")
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return bad(`want a whole number of bytes, or a string like "1MiB"`)
		}
		*p = n
	case *time.Duration:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return bad(`want whole seconds, or a duration string like "40s"`)
		}
		d, err := secondsDuration(n)
		if err != nil {
			return bad(`want whole seconds, or a duration string like "40s"`)
		}
		*p = d
	default:
		panic(fmt.Sprintf("config: setting %s has unsupported type %T", s.name, p))
	}
	return nil
}

// format renders the field's value for help, or "" when it is empty.
func (s setting) format(c *Config) string {
	switch p := s.field(c).(type) {
	case *string:
		if *p == "" {
			return ""
		}
		return strconv.Quote(*p)
	case *[]string:
		return strings.Join(*p, ",")
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *time.Duration:
		return p.String()
	default:
		panic(fmt.Sprintf("config: setting %s has unsupported type %T", s.name, p))
	}
}
