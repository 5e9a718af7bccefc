package realtime

import (
	"context"
	"net/url"

	"github.com/pushpull/pushpull/internal/channel"
)

// The channel lists of requests, read with the signer of the request's
// portal (the server's own in personal mode) and moved into its namespace
// (tenant.go).

// parseSubscribe validates a subscriber's CHANNEL_ID: every element signed,
// and one bad element refuses the whole list.
func (s *Server) parseSubscribe(ctx context.Context, q url.Values) ([]channel.Element, error) {
	elems, err := channel.ParseList(q.Get("CHANNEL_ID"), channel.ListOptions{
		Signer:           s.signerOf(ctx),
		RequireSignature: true,
		MaxElements:      s.opt.MaxChannelsPerRequest,
	})
	return scopeElements(ctx, elems), err
}

// parseTrusted validates a backend's CHANNEL_ID: ids may come unsigned (the
// PHP module sends raw ids), but any signature present must be right.
func (s *Server) parseTrusted(ctx context.Context, raw string) ([]channel.Element, error) {
	elems, err := channel.ParseList(raw, channel.ListOptions{
		Signer:      s.signerOf(ctx),
		MaxElements: s.opt.MaxChannelsPerRequest,
	})
	return scopeElements(ctx, elems), err
}
