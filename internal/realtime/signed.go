package realtime

import (
	"net/url"

	"github.com/pushpull/pushpull/internal/channel"
)

// The channel lists of requests, read with the server's signer.

// parseSubscribe validates a subscriber's CHANNEL_ID: every element signed,
// and one bad element refuses the whole list.
func (s *Server) parseSubscribe(q url.Values) ([]channel.Element, error) {
	return channel.ParseList(q.Get("CHANNEL_ID"), channel.ListOptions{
		Signer:           s.signer,
		RequireSignature: true,
		MaxElements:      s.opt.MaxChannelsPerRequest,
	})
}

// parseTrusted validates a backend's CHANNEL_ID: ids may come unsigned (the
// PHP module sends raw ids), but any signature present must be right.
func (s *Server) parseTrusted(raw string) ([]channel.Element, error) {
	return channel.ParseList(raw, channel.ListOptions{
		Signer:      s.signer,
		MaxElements: s.opt.MaxChannelsPerRequest,
	})
}
