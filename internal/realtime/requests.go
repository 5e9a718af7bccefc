package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/tenant"
	"github.com/pushpull/pushpull/internal/wire"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// requester is who sent a RequestBatch: a trusted backend (/pub/), or a
// client (WebSocket binary frame, /pubweb/) publishing as its public id.
type requester struct {
	trusted   bool
	publisher channel.ID
	hasPublic bool
	source    publishSource  // a client's, charged by the rate limits
	tenant    *tenant.Tenant // shared mode: whose channels it names
}

// handleRequestBatch validates every request of the batch and only then
// carries them out in order, so a bad request changes nothing. It returns
// the encoded ResponseBatch for channelStats and serverStats requests, or nil
// when there is nothing to answer.
func (s *Server) handleRequestBatch(ctx context.Context, data []byte, who requester) ([]byte, error) {
	if !who.trusted && !who.hasPublic {
		return nil, errPublicRequired
	}
	batch, err := wire.DecodeRequestBatch(data)
	if err != nil || len(batch.GetRequests()) == 0 {
		return nil, errWrongRequestData
	}
	type step struct {
		publish []*message.Message
		stats   []*pb.ChannelId
		server  bool
	}
	steps := make([]step, 0, len(batch.GetRequests()))
	var planned []*message.Message
	for _, req := range batch.GetRequests() {
		switch {
		case req.GetIncomingMessages() != nil:
			msgs, err := s.planMessages(req.GetIncomingMessages(), who)
			if err != nil {
				return nil, err
			}
			steps = append(steps, step{publish: msgs})
			planned = append(planned, msgs...)
		case req.GetChannelStats() != nil:
			ids := req.GetChannelStats().GetChannels()
			if err := s.checkChannelIDs(ids, who); err != nil {
				return nil, err
			}
			steps = append(steps, step{stats: ids})
		case req.GetServerStats() != nil:
			if !who.trusted {
				return nil, errCommandNotAllowed
			}
			steps = append(steps, step{server: true})
		case req.GetRegistration() != nil:
			if !who.trusted {
				return nil, errCommandNotAllowed
			}
			// Registration is cloud licensing, not a /pub/ action.
			return nil, errWrongRequestCommand
		default:
			return nil, errWrongRequestCommand
		}
	}
	if err := s.admitClientBatch(who, planned); err != nil {
		return nil, err
	}

	var out pb.ResponseBatch
	for _, st := range steps {
		for _, m := range st.publish {
			if err := s.broker.Publish(ctx, m); err != nil {
				return nil, fmt.Errorf("publish: %w", err)
			}
			s.metrics.publishedBy(who)
			s.log.Debug("published", "mid", m.ID.String(), "receivers", len(m.Receivers), "trusted", who.trusted, "expiry", m.Expiry)
		}
		if st.stats != nil {
			resp, err := s.channelStatsResponse(ctx, st.stats, who)
			if err != nil {
				return nil, err
			}
			out.Responses = append(out.Responses, resp)
		}
		if st.server {
			js, err := json.Marshal([]ProcessStat{s.Stat()})
			if err != nil {
				return nil, fmt.Errorf("server stats: %w", err)
			}
			out.Responses = append(out.Responses, &pb.Response{Command: &pb.Response_ServerStats{ServerStats: &pb.JsonResponse{Json: string(js)}}})
		}
	}
	if len(out.Responses) == 0 {
		return nil, nil
	}
	return wire.EncodeResponseBatch(&out)
}

// planMessages validates one incomingMessages request and builds its
// messages: trusted receivers are 16-byte ids (private ones listened on,
// public ones reaching their private channel); a client may only address
// public ids it holds a valid signature for.
func (s *Server) planMessages(req *pb.IncomingMessagesRequest, who requester) ([]*message.Message, error) {
	in := req.GetMessages()
	if len(in) > maxMessagesPerRequest {
		return nil, errTooManyMessages
	}
	out := make([]*message.Message, 0, len(in))
	for _, im := range in {
		rs := im.GetReceivers()
		if len(rs) == 0 {
			return nil, errNoChannelsFound
		}
		if len(rs) > s.opt.MaxChannelsPerRequest {
			return nil, errTooManyChannelsReq
		}
		m := &message.Message{
			Receivers: make([]message.Receiver, 0, len(rs)),
			Body:      []byte(im.GetBody()),
			Expiry:    s.capExpiry(im.GetExpiry()),
			Sender:    message.Sender{Type: message.SenderBackend},
		}
		if !who.trusted {
			m.Sender = message.Sender{Type: message.SenderClient, ID: who.publisher}
		}
		for _, r := range rs {
			id, err := s.checkReceiver(r.GetId(), r.GetIsPrivate(), r.GetSignature(), who)
			if err != nil {
				return nil, err
			}
			m.Receivers = append(m.Receivers, message.Receiver{ID: id, Public: !r.GetIsPrivate()})
		}
		// The body may be anything, as on Push server 2.x: protobuf
		// subscribers get it as it is, the others as a JSON value that
		// cannot break their frames (wire.AppendJSONObject). Decoding
		// refused bytes that are not UTF-8 (4013).
		out = append(out, m)
	}
	return out, nil
}

func (s *Server) checkChannelIDs(ids []*pb.ChannelId, who requester) error {
	if len(ids) == 0 {
		return errNoChannelsFound
	}
	if len(ids) > s.opt.MaxChannelsPerRequest {
		return errTooManyChannelsReq
	}
	for _, c := range ids {
		if _, err := s.checkReceiver(c.GetId(), c.GetIsPrivate(), c.GetSignature(), who); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) checkReceiver(raw []byte, private bool, sig []byte, who requester) (channel.ID, error) {
	id, ok := channel.IDFromBytes(raw)
	if who.trusted {
		if !ok {
			return id, errInvalidChannelID
		}
		return who.scope(id), nil
	}
	if private {
		return id, errPrivateNotAllowed
	}
	if !ok || !who.signer(s).VerifyPublic(id, sig) {
		return id, errInvalidSignature
	}
	return who.scope(id), nil
}

// capExpiry applies protocol version 4's storage rule: 0 is delivered live
// and never stored, anything else is kept at most MessageTTL.
func (s *Server) capExpiry(expiry uint32) uint32 {
	return min(expiry, uint32(s.opt.MessageTTL/time.Second))
}

func (s *Server) channelStatsResponse(ctx context.Context, ids []*pb.ChannelId, who requester) (*pb.Response, error) {
	chans := make([]channel.ID, len(ids))
	for i, c := range ids {
		id, _ := channel.IDFromBytes(c.GetId())
		chans[i] = who.scope(id)
	}
	counts, err := s.broker.Online(ctx, chans)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	stats := &pb.ChannelStatsResponse{Channels: make([]*pb.ChannelStats, len(ids))}
	for i, c := range ids {
		stats.Channels[i] = &pb.ChannelStats{Id: c.GetId(), IsPrivate: c.GetIsPrivate(), IsOnline: counts[i] > 0}
	}
	return &pb.Response{Command: &pb.Response_ChannelStats{ChannelStats: stats}}, nil
}

// admitClientBatch applies the client limits to the messages of one
// RequestBatch: at most maxMessagesPerRequest in all (2.x reads only the
// first request of a batch, which holds at most that many), and the rate
// limits. Backends are not limited.
func (s *Server) admitClientBatch(who requester, msgs []*message.Message) error {
	if who.trusted {
		return nil
	}
	if len(msgs) > maxMessagesPerRequest {
		return errTooManyMessages
	}
	if !s.pubLimits.admit(who.source, msgs) {
		return errPublishRate
	}
	return nil
}

// requester is this connection as the author of client requests.
func (s *session) requester() requester {
	return requester{publisher: s.publisher, hasPublic: s.hasPublic, tenant: s.tenant}
}

// signer is the signer that checks what the requester signs.
func (who requester) signer(s *Server) *channel.Signer {
	if who.tenant != nil {
		return who.tenant.Signer()
	}
	return s.signer
}

// scope maps a channel id the requester names to the server's channel.
func (who requester) scope(id channel.ID) channel.ID {
	if who.tenant != nil {
		return who.tenant.Scope(id)
	}
	return id
}

// publishedBy counts a message published by a protobuf RequestBatch.
func (c *counters) publishedBy(who requester) {
	switch {
	case who.trusted:
		c.published[routePubBinary].Add(1)
	case who.source.conn != nil:
		c.published[routeWebSocket].Add(1)
	default:
		c.published[routePubWeb].Add(1)
	}
}
