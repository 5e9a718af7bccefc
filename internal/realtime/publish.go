package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
	"github.com/pushpull/pushpull/internal/wire/pb"
)

// oversizeDrainTime bounds how long a refused oversize body is read (see
// refuseOversize).
const oversizeDrainTime = 10 * time.Second

// servePub is the trusted backend route: POST publishes, GET reports which
// channels have subscribers.
func (s *Server) servePub(w http.ResponseWriter, r *http.Request) {
	binary := r.URL.Query().Get("binaryMode") == "true"
	switch {
	case r.Method == http.MethodPost && binary:
		s.publishBinary(w, r, requester{trusted: true, tenant: tenantFrom(r.Context())})
	case r.Method == http.MethodPost:
		s.publishText(w, r)
	case r.Method == http.MethodGet && binary:
		s.channelStatsBinary(w, r)
	case r.Method == http.MethodGet:
		s.channelStats(w, r)
	case r.Method == http.MethodOptions:
		serveOptions(w, "GET, POST, OPTIONS", pubAllowHeaders)
	default:
		methodNotAllowed(w, "GET, POST, OPTIONS")
	}
}

// publishText is POST /pub/?CHANNEL_ID=a/b with the message as the body.
// The body may be anything (Push server 2.x delivers any body); only what
// would break a subscriber's connection is refused: bytes that are not
// UTF-8 (4013). A version 3 server refuses a missing or bad CHANNEL_ID and
// an empty body with Push server 1.0's texts; versions 4 and 5 answer them
// 200 and publish nothing, as Push server 2.x does (docs/decisions.md,
// "Publish bodies, publish errors and oversize requests").
func (s *Server) publishText(w http.ResponseWriter, r *http.Request) {
	// Refuse an oversize body before anything else; a body without a
	// length is cut off at the limit when read.
	if r.ContentLength > s.opt.MaxPayload {
		s.refuseOversize(w, r)
		return
	}
	v3 := s.opt.ServerVersion == 3
	raw := r.URL.Query().Get("CHANNEL_ID")
	elems, err := s.parseTrusted(r.Context(), raw)
	switch {
	case errors.Is(err, channel.ErrTooManyChannels):
		writeError(w, errTooManyChannelsReq)
		return
	case err != nil && v3 && raw == "":
		writeText(w, http.StatusBadRequest, errNoChannelID)
		return
	case err != nil && v3:
		s.log.Debug("publish refused", "remote", r.RemoteAddr, "err", err)
		writeText(w, http.StatusBadRequest, errBadChannel)
		return
	}
	expiry, ok := s.parseExpiry(r.Header.Get("Message-Expiry"))
	if !ok {
		writeText(w, http.StatusBadRequest, errBadExpiry)
		return
	}
	body, ok := s.readBody(w, r)
	if !ok || !s.tenantSigned(w, r, string(body)) {
		return
	}
	switch {
	case len(body) == 0 && v3:
		writeText(w, http.StatusBadRequest, errEmptyBody)
		return
	case len(body) == 0 || err != nil:
		s.log.Info("publish dropped: no channels or empty body", "remote", r.RemoteAddr, "err", err, "bytes", len(body))
		writeText(w, http.StatusOK, "")
		return
	case !utf8.Valid(body):
		// Text subscribers get the body inside WebSocket text messages,
		// which must be UTF-8: browsers drop the connection otherwise.
		writeError(w, errWrongRequestData)
		return
	}
	m := &message.Message{
		Receivers: make([]message.Receiver, len(elems)),
		Body:      body,
		Expiry:    expiry,
		Sender:    message.Sender{Type: message.SenderBackend},
	}
	for i, e := range elems {
		m.Receivers[i] = message.Receiver{ID: e.ID}
	}
	if err := s.broker.Publish(r.Context(), m); err != nil {
		s.log.Error("publish failed", "channels", len(elems), "err", err)
		writeText(w, http.StatusServiceUnavailable, "Message could not be stored.")
		return
	}
	s.metrics.published[routePubText].Add(1)
	writeText(w, http.StatusOK, "")
}

// readBody reads a publish body up to MaxPayload; on failure it has
// answered already.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.ContentLength > s.opt.MaxPayload {
		s.refuseOversize(w, r)
		return nil, false
	}
	// A declared length sizes the buffer once: io.ReadAll's doubling would
	// leave twice a 1 MiB body in garbage for the collector.
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 {
		buf.Grow(int(n) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.opt.MaxPayload))
	body := buf.Bytes()
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.refuseOversize(w, r)
			return nil, false
		}
		s.log.Debug("publish body read failed", "remote", r.RemoteAddr, "err", err)
		writeText(w, http.StatusBadRequest, "Cannot read the request body.")
		return nil, false
	}
	return body, true
}

// publishBinary carries out a protobuf RequestBatch posted by a backend
// (/pub/?binaryMode=true) or a client (/pubweb/).
func (s *Server) publishBinary(w http.ResponseWriter, r *http.Request, who requester) {
	if body, ok := s.readBody(w, r); ok && (!who.trusted || s.tenantSigned(w, r, string(body))) {
		s.answerBatch(w, r, body, who)
	}
}

func (s *Server) answerBatch(w http.ResponseWriter, r *http.Request, body []byte, who requester) {
	resp, err := s.handleRequestBatch(r.Context(), body, who)
	var perr *protoError
	switch {
	case errors.As(err, &perr):
		s.log.Debug("protobuf request refused", "remote", r.RemoteAddr, "trusted", who.trusted, "err", err)
		writeError(w, perr)
	case err != nil:
		s.log.Error("protobuf request failed", "err", err)
		writeText(w, http.StatusServiceUnavailable, "Message could not be stored.")
	case resp != nil:
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(resp)
	default:
		writeText(w, http.StatusOK, "")
	}
}

// servePubWeb is client publishing over HTTP, for clients on long polling:
// the same RequestBatch bytes a WebSocket client sends, authenticated by the
// CHANNEL_ID it subscribes with.
func (s *Server) servePubWeb(w http.ResponseWriter, r *http.Request) {
	if !acceptPost(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	if s.ackOverHTTP(w, body) {
		return
	}
	elems, err := s.parseSubscribe(r.Context(), r.URL.Query())
	if err != nil {
		// Push server 2.x drops what fails the signature check and then
		// finds no public id to publish as.
		s.log.Debug("client publish refused", "remote", r.RemoteAddr, "err", err)
		writeError(w, errPublicRequired)
		return
	}
	sess := newSession(s, elems, protobufProtocol{})
	bindTenant(r.Context(), sess)
	who := sess.requester()
	who.source.ip = clientPrefix(r)
	s.answerBatch(w, r, body, who)
}

// statsChannels reads the CHANNEL_ID of an online check; on failure it has
// answered with the reference's code.
func (s *Server) statsChannels(w http.ResponseWriter, r *http.Request) ([]channel.Element, bool) {
	raw := r.URL.Query().Get("CHANNEL_ID")
	if !s.tenantSigned(w, r, raw) {
		return nil, false
	}
	elems, err := s.parseTrusted(r.Context(), raw)
	switch {
	case err == nil:
		return elems, true
	case errors.Is(err, channel.ErrTooManyChannels):
		writeError(w, errTooManyChannelsReq)
	case errors.Is(err, channel.ErrNoChannels) || s.opt.ServerVersion != 3:
		// Version 4 drops a list with a bad element and has none left.
		writeError(w, errNoChannelsFound)
	default:
		writeText(w, http.StatusBadRequest, errBadChannel)
	}
	return nil, false
}

// channelStatsBinary is GET /pub/?binaryMode=true&CHANNEL_ID=…: the
// protobuf form of the online check.
func (s *Server) channelStatsBinary(w http.ResponseWriter, r *http.Request) {
	elems, ok := s.statsChannels(w, r)
	if !ok {
		return
	}
	ids := make([]*pb.ChannelId, len(elems))
	for i, e := range elems {
		id := scopeID(r.Context(), e.ID) // back to the id the backend named
		ids[i] = &pb.ChannelId{Id: id[:], IsPrivate: true}
	}
	resp, err := s.channelStatsResponse(r.Context(), ids, requester{trusted: true, tenant: tenantFrom(r.Context())})
	if err == nil {
		var body []byte
		if body, err = wire.EncodeResponseBatch(&pb.ResponseBatch{Responses: []*pb.Response{resp}}); err == nil {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(body)
			return
		}
	}
	s.log.Error("channel stats failed", "err", err)
	writeText(w, http.StatusServiceUnavailable, "Presence is unavailable.")
}

// refuseOversize answers 413 and closes the connection. The client is
// usually still sending: closing a socket with unread data resets it, and
// the client then sees the reset instead of the status. So up to twice the
// payload limit is read and dropped first, within oversizeDrainTime; a
// body longer than that is cut off as before.
func (s *Server) refuseOversize(w http.ResponseWriter, r *http.Request) {
	s.log.Debug("publish refused: body over the limit", "remote", r.RemoteAddr, "limit", s.opt.MaxPayload)
	if drain := 2 * s.opt.MaxPayload; r.ContentLength <= drain {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(oversizeDrainTime))
		_, _ = io.CopyN(io.Discard, r.Body, drain)
	}
	w.Header().Set("Connection", "close")
	writeText(w, http.StatusRequestEntityTooLarge, "")
}

// parseExpiry maps Message-Expiry to the stored lifetime, as Push server 1.0
// does: absent or 0 means the server's maximum, anything else is capped by it.
func (s *Server) parseExpiry(v string) (uint32, bool) {
	maxTTL := uint32(s.opt.MessageTTL / time.Second)
	if v == "" {
		return maxTTL, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false
	}
	if n == 0 || n > uint64(maxTTL) {
		return maxTTL, true
	}
	return uint32(n), true
}

// channelStats is GET /pub/?CHANNEL_ID=a/b: the channels that have
// subscribers now, in the v3 server's shape that the PHP module decodes.
func (s *Server) channelStats(w http.ResponseWriter, r *http.Request) {
	elems, ok := s.statsChannels(w, r)
	if !ok {
		return
	}
	ids := make([]channel.ID, len(elems))
	for i, e := range elems {
		ids[i] = e.ID
	}
	counts, err := s.broker.Online(r.Context(), ids)
	if err != nil {
		s.log.Error("channel stats failed", "err", err)
		writeText(w, http.StatusServiceUnavailable, "Presence is unavailable.")
		return
	}
	type info struct {
		Channel     string `json:"channel"`
		Subscribers int    `json:"subscribers"`
	}
	out := struct {
		Infos []info `json:"infos"`
	}{Infos: []info{}}
	for i, id := range ids {
		if counts[i] > 0 {
			out.Infos = append(out.Infos, info{Channel: scopeID(r.Context(), id).String(), Subscribers: counts[i]})
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "")
		return
	}
	writeText(w, http.StatusOK, string(body))
}
