package realtime

import (
	"fmt"
	"net/http"

	"github.com/pushpull/pushpull/internal/wire"
)

// protoError is one of the push server's numbered errors (docs/protocol.md,
// "Errors"). The text is part of the wire contract: clients and the Bitrix
// tests match it, so every text below is byte for byte Push server 2.x's.
type protoError struct {
	code int
	text string
}

func (e *protoError) Error() string { return fmt.Sprintf("%d: %s", e.code, e.text) }

// httpStatus is the status the reference answers the error with over HTTP.
func (e *protoError) httpStatus() int {
	if e.code == errTooManyConnections.code || e.code == errPublishRate.code {
		return http.StatusTooManyRequests
	}
	return http.StatusBadRequest
}

// The numbered errors, with Push server 2.x's codes and exact texts. Those
// of shared mode (4022–4025, 4032–4036: registration, /systemctl/ and
// tenants) are in tenant.go; 4031 is never sent and left out.
var (
	errWrongChannelID      = &protoError{4010, "Wrong Channel Id."}
	errLastMessages        = &protoError{4011, "Couldn't get last messages."}
	errPublicRequired      = &protoError{4012, "Public Channel Id is Required."}
	errWrongRequestData    = &protoError{4013, "Wrong Request Data."}
	errCommandNotAllowed   = &protoError{4014, "Request command is not allowed."}
	errWrongRequestCommand = &protoError{4015, "Wrong Request Command."}
	errTooManyMessages     = &protoError{4016, "Request exceeded the maximum number of messages."}
	errNoChannelsFound     = &protoError{4017, "No channels found."}
	errTooManyChannelsReq  = &protoError{4018, "Request exceeded the maximum number of channels."}
	errInvalidChannelID    = &protoError{4019, "Request has an invalid channel id."}
	errPrivateNotAllowed   = &protoError{4020, "Private channel is not allowed."}
	errInvalidSignature    = &protoError{4021, "Channel has an invalid signature."}
	// errWrongSignature refuses an /api/ body whose signature does not
	// verify; there it travels inside a JSON-RPC error.
	errWrongSignature = &protoError{4026, "Wrong request signature."}
	// errPublishRate is a client publish refused by a rate limit. 2.x has no
	// such limit and leaves 4028 unused; HTTP answers it with 429.
	errPublishRate = &protoError{4028, "Too many messages, slow down."}
	// errTooManyConnections evicts the oldest connection of a private
	// channel; 2.x's text has no final dot.
	errTooManyConnections = &protoError{4029, "Too many connections"}
	// 4030 "Wrong ChannelStats Request." is for a channelStats without a
	// channels list, which proto3 cannot tell from an empty one; Push
	// server 2.x answers the empty list 4017, and so does pushpull.
)

// Backend publish errors of a version 3 server: Push server 1.0's texts
// (unnumbered), which the Bitrix PHP module and existing tooling know.
// Versions 4 and 5 answer the way Push server 2.x does (see publishText).
const (
	errNoChannelID = "No channel id provided."
	errBadChannel  = "Channel id is not correct."
	errEmptyBody   = "Empty post requests are not allowed."
	// errBadExpiry is pushpull's own (docs/decisions.md, "/pub/ text
	// errors"): 2.x reads garbage as 0, pushpull refuses it.
	errBadExpiry = "Message-Expiry must be a whole number of seconds."
)

// invalidParams is JSON-RPC's -32602 with msg: the answer to parameters a
// method (client or backend) cannot take.
func invalidParams(msg string) *wire.RPCError { return wire.NewRPCError(wire.RPCInvalidParams, msg) }

// rpcRateLimited is the JSON-RPC code of errPublishRate, in the range the
// specification leaves to servers.
const rpcRateLimited = -32000
