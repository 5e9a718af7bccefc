package realtime

import (
	"errors"
	"net/http"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/token"
)

// logRefused writes the one debug line of a refused subscription, a long
// poll or a WebSocket handshake: the transport, the reason in a few words
// and who asked, with the request's context (and so its request id).
//
// The error's own text is left out on purpose: it can quote the CHANNEL_ID
// element it refused, signature included, and no signature, token or
// channel id belongs in a log.
func (s *Server) logRefused(r *http.Request, transport string, err error) {
	s.metrics.refused(err)
	s.log.DebugContext(r.Context(), "subscription refused", "transport", transport,
		"protocol", requestedProtocol(r.URL.Query()), "reason", refusalReason(err), "remote", r.RemoteAddr)
}

// refusalReason names why a subscription was refused without quoting what
// the client sent.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, errDraining):
		return "server is shutting down"
	case errors.Is(err, channel.ErrNoChannels):
		return "no channels"
	case errors.Is(err, channel.ErrTooManyChannels):
		return "too many channels"
	case errors.Is(err, channel.ErrWrongChannel):
		return "bad channel id or signature"
	case errors.Is(err, token.ErrExpired):
		return "token expired"
	case errors.Is(err, token.ErrSignature):
		return "bad token signature"
	case errors.Is(err, token.ErrAlgorithm):
		return "token algorithm not HS256"
	case errors.Is(err, token.ErrMalformed), errors.Is(err, token.ErrClaims):
		return "malformed token"
	case errors.Is(err, errWrongChannelID):
		return "wrong channel id"
	case errors.Is(err, errUpgrade):
		return "bad websocket upgrade request"
	}
	return "other"
}

// errUpgrade marks a WebSocket handshake the upgrader refused (it has
// answered 400 itself).
var errUpgrade = errors.New("websocket upgrade refused")

// refused counts a subscribe request refused with err (logRefused).
func (c *counters) refused(err error) {
	reason := refusedOther // the broker could not attach it, say
	switch {
	case errors.Is(err, errDraining):
		reason = refusedDraining
	case errors.Is(err, errUpgrade):
		reason = refusedBadUpgrade
	case errors.Is(err, token.ErrExpired):
		reason = refusedExpiredToken
	case errors.Is(err, token.ErrMalformed), errors.Is(err, token.ErrAlgorithm),
		errors.Is(err, token.ErrSignature), errors.Is(err, token.ErrClaims):
		reason = refusedBadToken
	case errors.Is(err, channel.ErrNoChannels):
		reason = refusedNoChannels
	case errors.Is(err, channel.ErrTooManyChannels):
		reason = refusedTooManyChannels
	case errors.Is(err, channel.ErrSignature):
		reason = refusedBadSignature
	case errors.Is(err, channel.ErrWrongChannel), errors.Is(err, errWrongChannelID):
		reason = refusedBadChannelID
	}
	c.handshakeFailures[reason].Add(1)
}
