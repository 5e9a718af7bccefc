package realtime

import (
	"time"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/tenant"
)

// Options configure a Server. The zero value is not usable; the server
// package fills every field from config.Config.
type Options struct {
	SubPaths    []string
	PubPaths    []string
	PubWebPaths []string
	// APIPaths are the backend's JSON-RPC prefixes (protocol version 5), trusted.
	APIPaths []string
	StatPath string

	MaxPayload            int64
	MaxChannelsPerRequest int
	MessageTTL            time.Duration
	Replay                broker.HistoryLimit
	// ReplayPerConnection bounds the messages a WebSocket recovery sends
	// on one connection (it reads page after page of Replay); the client
	// reconnects for the rest. 0: 10,000.
	ReplayPerConnection int

	PollTimeout  time.Duration
	PingInterval time.Duration
	// RPCPingInterval is how often version 5 connections get a text ping.
	RPCPingInterval time.Duration
	WriteTimeout    time.Duration
	SendQueue       int
	// MaxConnPerChannel caps the connections on one private channel with a
	// public id; the oldest is closed with 4029 beyond it. 0: no cap.
	MaxConnPerChannel int
	// GoroutineReaders gives every WebSocket a reader goroutine of its own
	// instead of reading from the epoll poller (Linux; elsewhere they always
	// have one). It costs a goroutine stack per idle connection.
	GoroutineReaders bool
	// ServerVersion is the push-server version the config advertises (3, 4
	// or 5); /pub/ answers its errors as that version's server does. 0 is
	// taken as 4.
	ServerVersion int
	// ClusterMode says the broker is shared by several nodes (Redis), for
	// /server-stat/.
	ClusterMode bool
	// KeepPolls keeps a long poll's session a few seconds for the client's
	// next poll instead of building one per poll (keptpoll.go).
	KeepPolls bool

	// ClientPublishRate limits the messages (one per receiver) a client
	// publishes over one WebSocket connection, ClientPublishIPRate those of
	// one client address on the HTTP route, and ClientPublishTargetRate the
	// client messages one channel receives. Zero values: no limit.
	ClientPublishRate       RateLimit
	ClientPublishIPRate     RateLimit
	ClientPublishTargetRate RateLimit

	// Tenants, when set, is shared mode: every request names its portal
	// (tenant.go). RegisterPaths and SystemctlPaths are then served, and
	// TenantVerifier judges registrations.
	Tenants        *tenant.Directory
	TenantVerifier tenant.Verifier
	RegisterPaths  []string
	SystemctlPaths []string
}

// DefaultRPCPingInterval is how often version 5 connections are pinged
// unless told otherwise: the clients reconnect after 20 s without a ping.
const DefaultRPCPingInterval = 10 * time.Second

// maxMessagesPerRequest is the reference's limit on one incomingMessages
// request, which the Bitrix PHP module also splits its batches by.
const maxMessagesPerRequest = 100
