package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

// The client methods of protocol version 5 (docs/protocol-v5.md, "Client
// methods"), as the clients spell them.
const (
	methodPublish           = "publish"
	methodGetUsersLastSeen  = "getUsersLastSeen"
	methodPing              = "ping"
	methodListChannels      = "listChannels"
	methodSubscribeStatus   = "subscribeStatusChange"
	methodUnsubscribeStatus = "unsubscribeStatusChange"
)

// clientMethod runs one call of a subscriber.
func (s *Server) clientMethod(ctx context.Context, sess *session, call wire.RPCCall) (any, *wire.RPCError) {
	rc := rpcOf(sess)
	switch call.Method {
	case methodPing:
		return "pong", nil
	case methodPublish:
		return s.clientPublish(ctx, sess, call.Params)
	case methodGetUsersLastSeen:
		var p struct {
			UserList []userID `json:"userList"`
		}
		if err := decodeParams(call.Params, &p); err != nil {
			return nil, err
		}
		if len(p.UserList) > maxUsersPerCall {
			return nil, invalidParams("userList has more than " + strconv.Itoa(maxUsersPerCall) + " users")
		}
		seen, err := s.usersLastSeen(ctx, rc.tenant, userIDs(p.UserList))
		if err != nil {
			s.log.Error("getUsersLastSeen", "err", err)
			return nil, wire.NewRPCError(wire.RPCInternalError, "")
		}
		return seen, nil
	case methodListChannels:
		type entry struct {
			ID   string `json:"id"`
			Type string `json:"type"`
		}
		list := make([]entry, 0, len(rc.channels)+1)
		for _, id := range rc.channels {
			list = append(list, entry{id.String(), "channel"})
		}
		if rc.user > 0 {
			list = append(list, entry{strconv.FormatInt(rc.user, 10), "user"})
		}
		return map[string]any{"channels": list}, nil
	case methodSubscribeStatus, methodUnsubscribeStatus:
		var p struct {
			UserID *userID `json:"userId"`
		}
		if err := decodeParams(call.Params, &p); err != nil {
			return nil, err
		}
		if p.UserID == nil || *p.UserID <= 0 {
			return nil, invalidParams("userId must be a positive user id")
		}
		if call.Method == methodUnsubscribeStatus {
			s.unwatch(ctx, sess, int64(*p.UserID))
			return true, nil
		}
		if err := s.watch(ctx, sess, int64(*p.UserID)); err != nil {
			return nil, err
		}
		return true, nil
	}
	return nil, wire.NewRPCError(wire.RPCMethodNotFound, "")
}

// clientPublish is a subscriber's publish: to other users of its tenant and
// to public channels whose signature it holds, as version 4 clients
// publish to public ids.
func (s *Server) clientPublish(ctx context.Context, sess *session, params json.RawMessage) (any, *wire.RPCError) {
	var p struct {
		UserList    []userID          `json:"userList"`
		ChannelList []json.RawMessage `json:"channelList"`
		Body        json.RawMessage   `json:"body"`
		Expiry      *uint32           `json:"expiry"`
	}
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	rc := rpcOf(sess)
	if rc.user == 0 && !sess.hasPublic {
		return nil, invalidParams(errPublicRequired.Error())
	}
	if !isObject(p.Body) {
		return nil, invalidParams("body must be an object")
	}
	if len(p.UserList)+len(p.ChannelList) == 0 {
		return nil, invalidParams(errNoChannelsFound.Error())
	}
	if len(p.UserList)+len(p.ChannelList) > s.opt.MaxChannelsPerRequest {
		return nil, invalidParams(errTooManyChannelsReq.Error())
	}
	m := &message.Message{
		Body:   p.Body,
		Expiry: s.defaultExpiry(p.Expiry),
		Sender: message.Sender{Type: message.SenderClient, UserID: rc.user, ID: sess.publisher},
	}
	for _, u := range p.UserList {
		if u <= 0 {
			return nil, invalidParams("userList holds a user id that is not positive")
		}
		m.Receivers = append(m.Receivers, message.Receiver{ID: channel.User(rc.tenant, int64(u))})
	}
	for _, raw := range p.ChannelList {
		id, ok := s.publicReceiver(raw, sess.requester())
		if !ok {
			return nil, invalidParams(errInvalidSignature.Error())
		}
		m.Receivers = append(m.Receivers, message.Receiver{ID: id, Public: true})
	}
	if err := s.admitRPCPublish(sess, m); err != nil {
		return nil, err
	}
	if err := s.broker.Publish(ctx, m); err != nil {
		s.log.Error("client publish failed", "err", err)
		return nil, wire.NewRPCError(wire.RPCInternalError, "")
	}
	s.metrics.published[routeWebSocket].Add(1)
	s.log.Debug("published", "mid", m.ID.String(), "receivers", len(m.Receivers), "user", rc.user)
	return true, nil
}

// publicReceiver reads one channelList element, "publicId.signature" or
// {"publicId":…,"signature":…}, and checks the public signature.
func (s *Server) publicReceiver(raw json.RawMessage, who requester) (channel.ID, bool) {
	var pub, sig string
	var str string
	if json.Unmarshal(raw, &str) == nil {
		var ok bool
		if pub, sig, ok = strings.Cut(str, "."); !ok {
			return channel.ID{}, false
		}
	} else {
		var obj struct {
			PublicID  string `json:"publicId"`
			Signature string `json:"signature"`
		}
		if json.Unmarshal(raw, &obj) != nil {
			return channel.ID{}, false
		}
		pub, sig = obj.PublicID, obj.Signature
	}
	id, err := channel.ParseID(pub)
	if err != nil || !who.signer(s).Verify("public:"+pub, sig) {
		return channel.ID{}, false
	}
	return who.scope(id), true
}

// defaultExpiry is a v5 publish's stored lifetime: absent is the Bitrix
// default of a day, 0 is live only, and either is capped by MessageTTL.
func (s *Server) defaultExpiry(e *uint32) uint32 {
	if e == nil {
		return s.capExpiry(86400)
	}
	return s.capExpiry(*e)
}

// decodeParams reads params (an object) into v; absent params are an
// empty object.
func decodeParams(params json.RawMessage, v any) *wire.RPCError {
	if params == nil {
		params = json.RawMessage(`{}`)
	}
	if params[0] != '{' {
		return invalidParams("params must be an object")
	}
	if err := json.Unmarshal(params, v); err != nil {
		return paramsError(err)
	}
	return nil
}

// paramsError says in the protocol's words which member of params has the
// wrong type; encoding/json's own text names Go types and struct fields.
func paramsError(err error) *wire.RPCError {
	var te *json.UnmarshalTypeError
	var ue *userIDError
	switch {
	case errors.As(err, &ue):
		return invalidParams("user ids must be integers")
	case errors.As(err, &te):
		field := te.Field
		if field == "" { // a value of a map, such as updateUsersLastSeen's
			field = "a member of params"
		}
		return invalidParams(field + " must be " + jsonKind(te.Type))
	}
	return invalidParams("")
}

// jsonKind names the JSON value a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return "a whole number from 0 to " + strconv.FormatUint(1<<t.Bits()-1, 10)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "of another type"
}

// isObject reports whether raw is a JSON object.
func isObject(raw json.RawMessage) bool {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	return len(raw) > 0 && raw[0] == '{' && json.Valid(raw)
}

// userID is a user id as the clients send it: a JSON number or a string of
// digits. b24jssdk sends strings when it re-subscribes status watches after
// a reconnect: it takes the ids from the keys of an object.
type userID int64

func (u *userID) UnmarshalJSON(b []byte) error {
	digits := string(b)
	if len(digits) >= 2 && digits[0] == '"' {
		if err := json.Unmarshal(b, &digits); err != nil {
			return err
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return &userIDError{}
	}
	*u = userID(n)
	return nil
}

// userIDError is a user id that is neither a number nor a string of
// digits; paramsError answers it.
type userIDError struct{}

func (*userIDError) Error() string { return "a user id is not an integer" }

func userIDs(us []userID) []int64 {
	out := make([]int64, len(us))
	for i, u := range us {
		out[i] = int64(u)
	}
	return out
}

// admitRPCPublish applies the rate limits to a version 5 client's publish.
func (s *Server) admitRPCPublish(sess *session, m *message.Message) *wire.RPCError {
	if !s.pubLimits.admit(publishSource{conn: &sess.pubBudget}, []*message.Message{m}) {
		return wire.NewRPCError(rpcRateLimited, errPublishRate.Error())
	}
	return nil
}
