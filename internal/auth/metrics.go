package auth

import "sync/atomic"

// The labels of the OAuth grant counters: the grant types the token
// endpoint serves (anything else is "other") and its answers.
var (
	grantTypes    = [...]string{"authorization_code", "refresh_token", "other"}
	grantOutcomes = [...]string{"ok", "invalid_request", "invalid_client", "invalid_grant", "server_error"}
)

type grantCounters [len(grantTypes)][len(grantOutcomes)]atomic.Uint64

// countGrant records a token request's grant type and how it was answered.
func (s *Service) countGrant(grantType string, oerr *oauthError) {
	t := len(grantTypes) - 1
	for i, g := range grantTypes[:t] {
		if g == grantType {
			t = i
		}
	}
	o := 0
	if oerr != nil {
		o = len(grantOutcomes) - 1 // a code not listed is the server's fault
		for i, c := range grantOutcomes {
			if c == oerr.Code {
				o = i
			}
		}
	}
	s.grants[t][o].Add(1)
}

// GrantCount is the token requests of one grant type with one outcome ("ok"
// or the OAuth error code).
type GrantCount struct {
	GrantType, Outcome string
	Count              uint64
}

// Grants reads the grant counters, every combination included.
func (s *Service) Grants() []GrantCount {
	out := make([]GrantCount, 0, len(grantTypes)*len(grantOutcomes))
	for t, g := range grantTypes {
		for o, c := range grantOutcomes {
			out = append(out, GrantCount{g, c, s.grants[t][o].Load()})
		}
	}
	return out
}
