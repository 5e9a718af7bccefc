package tenant

import (
	"strings"
	"testing"
)

// FuzzClientIDOf: a registration's verificationQuery is whatever a stranger
// posts; reading its client id never panics, and what it accepts is a valid,
// lower-case client id that the query really names.
func FuzzClientIDOf(f *testing.F) {
	f.Add("BX_LICENCE=0123456789abcdef0123456789abcdef&BX_TYPE=PRO")
	f.Add("BX_LICENCE=%zz")
	f.Add("")
	f.Add("BX_LICENCE=ABCDEF0123456789ABCDEF0123456789;x=1")
	f.Fuzz(func(t *testing.T, query string) {
		id, err := clientIDOf(query)
		if err != nil {
			if id != "" {
				t.Fatalf("refused %q but returned %q", query, id)
			}
			return
		}
		if !ValidClientID(id) || id != strings.ToLower(id) {
			t.Fatalf("accepted %q from %q", id, query)
		}
		if !strings.Contains(strings.ToLower(query), id) && !strings.Contains(strings.ToLower(query), "%") {
			t.Fatalf("accepted %q, which %q does not name", id, query)
		}
	})
}
