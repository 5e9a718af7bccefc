package netpoll

import (
	"strings"
	"testing"
)

func TestAdvance(t *testing.T) {
	pieces := func() [][]byte { return [][]byte{[]byte("ab"), nil, []byte("cde"), []byte("f")} }
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "ab||cde|f"}, {1, "b||cde|f"}, {2, "cde|f"}, {4, "e|f"}, {5, "f"}, {6, ""},
	} {
		var parts []string
		for _, p := range Advance(pieces(), tc.n) {
			parts = append(parts, string(p))
		}
		if got := strings.Join(parts, "|"); got != tc.want {
			t.Errorf("Advance(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
