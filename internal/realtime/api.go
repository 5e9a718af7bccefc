package realtime

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

// methodUpdateUsersLastSeen is the backend's own method (docs/protocol-v5.md,
// "Backend endpoint"); it shares publish and getUsersLastSeen with the
// clients.
const methodUpdateUsersLastSeen = "updateUsersLastSeen"

// serveAPI is the backend's JSON-RPC endpoint (Bitrix path_to_json_rpc,
// /bitrix/api/): publish batches, and users' last-seen times both ways.
// The body is signed with the channel key, like the cloud's /pub/; the
// tenant is hostId, the iss of the tokens that portal issues. Bitrix's PHP
// client takes any answer but HTTP 200 with a JSON body carrying
// "jsonrpc":"2.0" as a failure and re-posts, so every call is answered,
// notifications (which it sends) included, with id null.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if !acceptPost(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	if !s.signerOf(r.Context()).Verify(string(body), q.Get("signature")) {
		s.log.Debug("JSON-RPC request refused: bad signature", "remote", r.RemoteAddr)
		writeJSON(w, http.StatusForbidden, wire.AppendRPCError(nil, nil,
			wire.NewRPCError(wire.RPCInvalidRequest, errWrongSignature.Error())))
		return
	}
	tenant := scopeUsers(r.Context(), q.Get("hostId"))
	resp := s.serveRPC(r.Context(), body, rpcFace{
		run: func(ctx context.Context, call wire.RPCCall) (any, *wire.RPCError) {
			return s.backendMethod(ctx, tenant, call)
		},
		answerAll: true,
	})
	if resp == nil {
		// Only responses were posted, which have no answer; PHP still
		// wants JSON.
		resp = wire.AppendRPCResult(nil, nil, json.RawMessage("null"))
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) backendMethod(ctx context.Context, tenant string, call wire.RPCCall) (any, *wire.RPCError) {
	switch call.Method {
	case methodPublish:
		return s.backendPublish(ctx, tenant, call.Params)
	case methodGetUsersLastSeen:
		var p struct {
			UserList []userID `json:"userList"`
		}
		if err := decodeParams(call.Params, &p); err != nil {
			return nil, err
		}
		seen, err := s.usersLastSeen(ctx, tenant, userIDs(p.UserList))
		if err != nil {
			s.log.Error("getUsersLastSeen", "err", err)
			return nil, wire.NewRPCError(wire.RPCInternalError, "")
		}
		return seen, nil
	case methodUpdateUsersLastSeen:
		// {"<user id>": <unix time>, …}; PHP encodes an empty one as [].
		var p map[string]int64
		if !isEmptyPHPArray(call.Params) {
			if err := decodeParams(call.Params, &p); err != nil {
				return nil, err
			}
		}
		seen := make(map[channel.ID]time.Time, len(p))
		for k, t := range p {
			u, err := strconv.ParseInt(k, 10, 64)
			if err != nil || u <= 0 {
				return nil, invalidParams("not a user id: " + strconv.Quote(k))
			}
			seen[channel.User(tenant, u)] = time.Unix(t, 0)
		}
		if err := s.broker.SetLastSeen(ctx, seen); err != nil {
			s.log.Error("updateUsersLastSeen", "err", err)
			return nil, wire.NewRPCError(wire.RPCInternalError, "")
		}
		return true, nil
	}
	return nil, wire.NewRPCError(wire.RPCMethodNotFound, "")
}

// backendPublish is one message of a backend publish batch: to raw channel
// ids (trusted, no signatures) and to users of the tenant, user 0 being
// the "shared" recipient whose channel is in channelList already.
func (s *Server) backendPublish(ctx context.Context, tenant string, params json.RawMessage) (any, *wire.RPCError) {
	var p struct {
		ChannelList []string        `json:"channelList"`
		UserList    []userID        `json:"userList"`
		Body        json.RawMessage `json:"body"`
		UserParams  json.RawMessage `json:"user_params"`
		Dictionary  json.RawMessage `json:"dictionary"`
		Expiry      *uint32         `json:"expiry"`
		Type        string          `json:"type"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if !isObject(p.Body) {
		return nil, invalidParams("body must be an object")
	}
	m := &message.Message{Body: p.Body, Expiry: s.defaultExpiry(p.Expiry), Sender: message.Sender{Type: message.SenderBackend}}
	for _, c := range p.ChannelList {
		id, err := channel.ParseID(c)
		if err != nil {
			return nil, invalidParams(errInvalidChannelID.Error() + " " + strconv.Quote(c))
		}
		m.Receivers = append(m.Receivers, message.Receiver{ID: scopeID(ctx, id)})
	}
	users := make(map[int64]channel.ID, len(p.UserList))
	for _, u := range userIDs(p.UserList) {
		switch {
		case u < 0:
			return nil, invalidParams("userList holds a negative user id")
		case u == 0:
			continue
		}
		if _, dup := users[u]; !dup {
			users[u] = channel.User(tenant, u)
			m.Receivers = append(m.Receivers, message.Receiver{ID: users[u]})
		}
	}
	if len(m.Receivers) == 0 {
		return true, nil // nobody to deliver to, as Bitrix's own event.add
	}
	var rerr *wire.RPCError
	if m.UserParams, rerr = userParams(p.UserParams, users); rerr != nil {
		return nil, rerr
	}
	if !isEmptyPHPArray(p.Dictionary) {
		if !isObject(p.Dictionary) {
			return nil, invalidParams("dictionary must be an object")
		}
		m.Dictionary = p.Dictionary
	}
	if err := s.broker.Publish(ctx, m); err != nil {
		s.log.Error("backend publish failed", "err", err)
		return nil, wire.NewRPCError(wire.RPCInternalError, "")
	}
	s.metrics.published[routeAPI].Add(1)
	s.log.Debug("published", "mid", m.ID.String(), "receivers", len(m.Receivers), "type", p.Type, "expiry", m.Expiry)
	return true, nil
}

// userParams reads user_params, {"<user id>": {…}, …}, keeping those of
// the message's users by their channel. PHP writes an empty array as [].
func userParams(raw json.RawMessage, users map[int64]channel.ID) (map[channel.ID][]byte, *wire.RPCError) {
	if isEmptyPHPArray(raw) {
		return nil, nil
	}
	var byUser map[string]json.RawMessage
	if !isObject(raw) || json.Unmarshal(raw, &byUser) != nil {
		return nil, invalidParams("user_params must be an object")
	}
	var out map[channel.ID][]byte
	for k, v := range byUser {
		u, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return nil, invalidParams("user_params: not a user id: " + strconv.Quote(k))
		}
		if isEmptyPHPArray(v) {
			continue
		}
		if !isObject(v) {
			return nil, invalidParams("user_params of user " + k + " must be an object")
		}
		ch, ok := users[u]
		if !ok {
			continue // params for someone the message is not for
		}
		if out == nil {
			out = make(map[channel.ID][]byte)
		}
		out[ch] = []byte(strings.TrimSpace(string(v)))
	}
	return out, nil
}

// isEmptyPHPArray reports an absent member, null, or [] (PHP's
// json_encode of an empty array).
func isEmptyPHPArray(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return true
	}
	if s[0] != '[' {
		return false
	}
	return strings.TrimSpace(s[1:len(s)-1]) == ""
}
