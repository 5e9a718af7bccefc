package rest

import (
	"net/http"
	"testing"
)

func TestCallsCountedByMethodAndOutcome(t *testing.T) {
	s, _ := newTestServer(t)
	for _, target := range []string{
		"/rest/pull.echo?auth=good",
		"/rest/PULL.Echo.json?auth=good",
		"/rest/pull.echo?auth=bad",
		"/rest/pull.fail?auth=good",
		"/rest/no.such.method?auth=good",
	} {
		do(t, s, http.MethodGet, target, "", "")
	}
	do(t, s, http.MethodOptions, "/rest/pull.echo", "", "") // a preflight is not a call

	calls, lat := s.Calls()
	want := map[CallKey]uint64{
		{"pull.echo", "ok"}:                   2,
		{"pull.echo", "invalid_token"}:        1,
		{"pull.fail", "WRONG_AUTH_TYPE"}:      1,
		{"unknown", "ERROR_METHOD_NOT_FOUND"}: 1,
	}
	got := map[CallKey]uint64{}
	for _, c := range calls {
		got[c.CallKey] = c.Calls
	}
	if len(got) != len(want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("calls %v = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	byMethod := map[string]uint64{}
	for _, l := range lat {
		byMethod[l.Method] = l.Latency.Count
	}
	if byMethod["pull.echo"] != 3 || byMethod["pull.fail"] != 1 || byMethod["unknown"] != 1 {
		t.Errorf("latency counts = %v, want pull.echo 3, pull.fail 1, unknown 1", byMethod)
	}
}
