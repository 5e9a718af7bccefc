package store

import (
	"strings"
	"time"
)

// What every Store implementation stores the same way; the SQLite and Redis
// stores share these so that their records round-trip identically.

// EncodeTime stores a time as Unix nanoseconds; the zero time is 0 because
// its UnixNano is out of range.
func EncodeTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// DecodeTime is the inverse of EncodeTime, in UTC so that results do not
// depend on the process's zone.
func DecodeTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// JoinScopes and SplitScopes store a scope list as one comma-separated
// string (scopes never contain commas).
func JoinScopes(s []string) string { return strings.Join(s, ",") }

// SplitScopes is the inverse of JoinScopes; "" is no scopes.
func SplitScopes(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// CloneScopes copies so that records never alias the caller's slice.
func CloneScopes(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

// FillToken generates a token pair's missing secrets and creation time, the
// time as a later read returns it (UTC, no monotonic reading).
func FillToken(t Token) (Token, error) {
	var err error
	if t.AccessToken == "" {
		if t.AccessToken, err = NewToken(); err != nil {
			return Token{}, err
		}
	}
	if t.RefreshToken == "" {
		if t.RefreshToken, err = NewToken(); err != nil {
			return Token{}, err
		}
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = DecodeTime(EncodeTime(time.Now()))
	}
	t.Scopes = CloneScopes(t.Scopes)
	return t, nil
}
