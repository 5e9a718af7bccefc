package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/pushpull/pushpull/internal/tenant"
)

// serveSystemctl is POST /systemctl/?signature=<HMAC of the body with the
// server's own key>: the operator's JSON-RPC-like commands, of which Push
// server 2.x has one, unregister {"clientId":…,"host":…}. The tenant's
// connections are cut (here at once, on other nodes at their next reload).
func (s *Server) serveSystemctl(w http.ResponseWriter, r *http.Request) {
	if !acceptPost(w, r) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	if len(body) == 0 {
		writeError(w, errEmptyRequest)
		return
	}
	if !s.signer.Verify(string(body), r.URL.Query().Get("signature")) {
		writeError(w, errWrongSignature)
		return
	}
	var call struct {
		Method json.RawMessage `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') || !json.Valid(trimmed) {
		writeError(w, errBadJSONRequest)
		return
	}
	if trimmed[0] == '[' {
		// An array is an object to the reference, without a method.
		writeError(w, errNoMethodProperty)
		return
	}
	_ = json.Unmarshal(trimmed, &call) // valid JSON object: cannot fail
	var method string
	if json.Unmarshal(call.Method, &method) != nil || len(call.Method) == 0 || call.Method[0] != '"' {
		writeError(w, errNoMethodProperty)
		return
	}
	if p := bytes.TrimSpace(call.Params); len(p) == 0 || (p[0] != '{' && p[0] != '[') {
		writeError(w, errNoParamsProperty)
		return
	}
	if method != "unregister" {
		writeError(w, errUnknownCommand)
		return
	}
	var p struct {
		ClientID any `json:"clientId"`
		Host     any `json:"host"`
	}
	_ = json.Unmarshal(call.Params, &p) // an array leaves both nil
	clientID, _ := p.ClientID.(string)
	host, _ := p.Host.(string)
	if !tenant.ValidClientID(clientID) {
		answerSystemctl(w, "Wrong Client Id.")
		return
	}
	err := s.opt.Tenants.Remove(r.Context(), clientID, host)
	switch {
	case errors.Is(err, tenant.ErrUnknown):
		answerSystemctl(w, "Client not found.")
	case err != nil:
		s.log.Error("unregister failed", "err", err)
		answerSystemctl(w, "Couldn't connect to the database.")
	default:
		s.log.Info("tenant unregistered", "client_id", clientID, "host", host)
		answerSystemctl(w, "")
	}
}

// answerSystemctl answers {"result":{"status":"success"},"error":null}, or
// {"result":null,"error":errText}.
func answerSystemctl(w http.ResponseWriter, errText string) {
	var body []byte
	if errText == "" {
		body = []byte(`{"result":{"status":"success"},"error":null}`)
	} else {
		e, _ := json.Marshal(errText)
		body = append(append([]byte(`{"result":null,"error":`), e...), '}')
	}
	writeJSON(w, http.StatusOK, body)
}
