package channel

import (
	"crypto/md5"
	"strconv"
)

// User, Status and Presence derive the internal channels of protocol
// version 5's users (docs/protocol-v5.md, "Decisions"): a user is (tenant,
// user id), the tenant being the JWT's iss or the backend's hostId. Deriving
// them keeps user routing inside the channel model, so history, recovery by
// mid and cluster fan-out work for users as they do for channels. The ids are
// hashes with a prefix no channel generator uses, and never reach a client;
// subscribing to one by CHANNEL_ID would need a signature only the server can
// make.
//
// User is where messages addressed to the user go.
func User(tenant string, user int64) ID { return derive("user", tenant, user) }

// Status is where the user's online/offline changes go, for the
// connections that watch the user (subscribeStatusChange).
func Status(tenant string, user int64) ID { return derive("status", tenant, user) }

// Presence counts the user's WebSocket connections: online means at least one.
func Presence(tenant string, user int64) ID { return derive("presence", tenant, user) }

func derive(kind, tenant string, user int64) ID {
	b := make([]byte, 0, 32+len(tenant))
	b = append(b, "pushpull:"...)
	b = append(b, kind...)
	b = append(b, ':')
	b = strconv.AppendInt(b, user, 10)
	b = append(b, ':')
	b = append(b, tenant...)
	return ID(md5.Sum(b))
}
