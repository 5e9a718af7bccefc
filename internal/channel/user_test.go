package channel

import "testing"

// The derived channels of version 5 users differ by kind, tenant and user,
// and are the same every time (every node must derive the same ids).
func TestUserChannels(t *testing.T) {
	seen := map[ID]string{}
	for _, tenant := range []string{"", "a", "b", "a:1"} {
		for _, user := range []int64{1, 2, 11} {
			for kind, f := range map[string]func(string, int64) ID{"user": User, "status": Status, "presence": Presence} {
				id := f(tenant, user)
				if id != f(tenant, user) {
					t.Fatalf("%s(%q, %d) is not stable", kind, tenant, user)
				}
				name := kind + "/" + tenant + "/" + string(rune('0'+user))
				if prev, dup := seen[id]; dup {
					t.Fatalf("%s and %s share %s", prev, name, id)
				}
				seen[id] = name
			}
		}
	}
	// A known value, so that a change of derivation (which would split a
	// cluster running two versions) is noticed.
	// md5("pushpull:user:1:abcdefghijklmnopqrstuvwxyz012345"), by Python's hashlib.
	if got := User("abcdefghijklmnopqrstuvwxyz012345", 1).String(); got != "6e540d2f4cc94c1b108bbe600b206038" {
		t.Fatalf("User = %s", got)
	}
}
