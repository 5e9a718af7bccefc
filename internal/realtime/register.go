package realtime

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"

	"github.com/pushpull/pushpull/internal/tenant"
)

// maxRegisterBody is the largest registration body, Push server 2.x's.
const maxRegisterBody = 1024

// serveRegister is POST /register-client/ with verificationQuery=…: a
// portal asks to be served and, once the verifier (--tenant-verify) agrees,
// gets the security key it is to sign with. The tenant is the client id
// the verifier vouches for and the host name the portal reached this server
// by. Answers are the reference's: {"status":"success","securityKey":…} or
// {"status":"error","error":…}, HTTP 200; an empty body and one without a
// verification query are the numbered errors 4022 and 4024.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	if !acceptPost(w, r) {
		return
	}
	if r.ContentLength > maxRegisterBody {
		s.refuseOversize(w, r)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegisterBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.refuseOversize(w, r)
			return
		}
		writeText(w, http.StatusBadRequest, "Cannot read the request body.")
		return
	}
	if len(body) == 0 {
		writeError(w, errEmptyRequest)
		return
	}
	form, err := url.ParseQuery(string(body))
	query := form.Get("verificationQuery")
	if err != nil || query == "" {
		writeError(w, errVerificationQuery)
		return
	}
	host := tenant.NormalizeHost(r.Host)
	clientID, err := s.opt.TenantVerifier.Verify(r.Context(), query)
	var refusal *tenant.Refusal
	switch {
	case errors.As(err, &refusal):
		s.log.Info("registration refused", "remote", r.RemoteAddr, "host", host, "code", refusal.Code)
		answerRegistration(w, "error", "error", refusal.Code)
		return
	case err != nil:
		s.log.Warn("registration not verified", "remote", r.RemoteAddr, "host", host, "err", err)
		answerRegistration(w, "error", "error", "Verification failed.")
		return
	}
	t, err := s.opt.Tenants.Add(r.Context(), clientID, host, tenant.OriginRegistered)
	switch {
	case errors.Is(err, tenant.ErrInvalid) && !tenant.ValidHost(host):
		answerRegistration(w, "error", "error", "Wrong hostname.")
		return
	case errors.Is(err, tenant.ErrInvalid):
		// A client id of the wrong shape, or the home portal's.
		answerRegistration(w, "error", "error", "Wrong Client ID.")
		return
	case err != nil:
		s.log.Error("registration not stored", "err", err)
		answerRegistration(w, "error", "error", "Couldn't save the client.")
		return
	}
	s.log.Info("tenant registered", "client_id", t.ClientID, "host", t.Host)
	answerRegistration(w, "success", "securityKey", t.Key)
}

func answerRegistration(w http.ResponseWriter, status, field, value string) {
	body, _ := json.Marshal(map[string]string{"status": status, field: value})
	writeJSON(w, http.StatusOK, body)
}
