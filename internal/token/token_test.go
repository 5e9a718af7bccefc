package token

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

var key = []byte("SECURITYKEY123456")

// A test vector computed independently of this package for the token rules of
// docs/protocol-v5.md, "Connecting".
const vector = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NSIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDQzMjAwLCJzdWIiOiIxIiwiY2hhbiI6ImZiOWY3ZTEzZGMzZDU5NWM1YWVmZTFhMDIxNmMyN2EyIn0.KCfQ0m8ZEP-FpDtHgIQmOWZhpsKcfeykMyI47rHnOVQ"

var vectorTime = time.Unix(1_700_000_100, 0)

func TestSpecVector(t *testing.T) {
	c, err := Verify(vector, key, vectorTime)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := channel.ParseID("fb9f7e13dc3d595c5aefe1a0216c27a2")
	if c.Issuer != "abcdefghijklmnopqrstuvwxyz012345" || c.User != 1 || len(c.Channels) != 1 || c.Channels[0] != want ||
		c.IssuedAt.Unix() != 1_700_000_000 || c.Expires.Unix() != 1_700_043_200 {
		t.Fatalf("claims = %+v", c)
	}
	// Sign writes the same bytes as the PHP backend for the same claims.
	if got := Sign(c, key); got != vector {
		t.Fatalf("Sign = %s\nwant   %s", got, vector)
	}
}

// raw builds a token from a header and payload JSON, signed with k.
func raw(hdr, payload string, k []byte) string {
	s := b64.EncodeToString([]byte(hdr)) + "." + b64.EncodeToString([]byte(payload))
	return s + "." + b64.EncodeToString(mac(k, s))
}

const okHeader = `{"typ":"JWT","alg":"HS256"}`

func TestVerifyRefuses(t *testing.T) {
	good := `{"iss":"h","iat":1700000000,"exp":1700043200,"sub":"1"}`
	parts := strings.Split(vector, ".")
	cases := []struct {
		name string
		tok  string
		want error
	}{
		{"expired", vector, ErrExpired},
		{"alg none", b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + b64.EncodeToString([]byte(good)) + ".", ErrAlgorithm},
		{"alg none signed", raw(`{"alg":"none"}`, good, key), ErrAlgorithm},
		{"alg HS512", raw(`{"alg":"HS512"}`, good, key), ErrAlgorithm},
		{"alg RS256", raw(`{"alg":"RS256"}`, good, key), ErrAlgorithm},
		{"alg lower case", raw(`{"alg":"hs256"}`, good, key), ErrAlgorithm},
		{"no alg", raw(`{"typ":"JWT"}`, good, key), ErrAlgorithm},
		{"alg not a string", raw(`{"alg":1}`, good, key), ErrMalformed},
		{"typ other", raw(`{"alg":"HS256","typ":"at+jwt"}`, good, key), ErrMalformed},
		{"crit", raw(`{"alg":"HS256","crit":["x"]}`, good, key), ErrMalformed},
		{"wrong key", raw(okHeader, good, []byte("other key")), ErrSignature},
		{"tampered payload", parts[0] + "." + b64.EncodeToString([]byte(strings.Replace(good, `"1"`, `"2"`, 1))) + "." + parts[2], ErrSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", ErrSignature},
		{"no iss", raw(okHeader, `{"iat":1700000000,"exp":1700043200,"sub":"1"}`, key), ErrClaims},
		{"empty iss", raw(okHeader, `{"iss":"","iat":1700000000,"exp":1700043200,"sub":"1"}`, key), ErrClaims},
		{"no iat", raw(okHeader, `{"iss":"h","exp":1700043200,"sub":"1"}`, key), ErrClaims},
		{"no exp", raw(okHeader, `{"iss":"h","iat":1700000000,"sub":"1"}`, key), ErrClaims},
		{"fractional exp", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":1700043200.5,"sub":"1"}`, key), ErrClaims},
		{"exp string", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":"1700043200","sub":"1"}`, key), ErrClaims},
		{"exp null", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":null,"sub":"1"}`, key), ErrClaims},
		{"neither sub nor chan", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":1700043200}`, key), ErrClaims},
		{"empty chan only", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":1700043200,"chan":""}`, key), ErrClaims},
		{"sub zero", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":1700043200,"sub":"0"}`, key), ErrClaims},
		{"sub not a number", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":1700043200,"sub":"x"}`, key), ErrClaims},
		{"sub a JSON number", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":1700043200,"sub":1}`, key), ErrMalformed},
		{"chan bad id", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":1700043200,"chan":"fb9f"}`, key), ErrClaims},
		{"chan upper case", raw(okHeader, `{"iss":"h","iat":1700000000,"exp":1700043200,"chan":"FB9F7E13DC3D595C5AEFE1A0216C27A2"}`, key), ErrClaims},
		{"payload not JSON", raw(okHeader, `not json`, key), ErrMalformed},
		{"payload array", raw(okHeader, `[1]`, key), ErrMalformed},
		{"data after payload", raw(okHeader, good+`{}`, key), ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", vector + ".x", ErrMalformed},
		{"one part", "abc", ErrMalformed},
		{"empty", "", ErrMalformed},
		{"padded base64", parts[0] + "=." + parts[1] + "." + parts[2], ErrMalformed},
		{"std base64 signature", parts[0] + "." + parts[1] + "." + base64.StdEncoding.EncodeToString([]byte{0xfb, 0xff}), ErrMalformed},
		{"header not JSON", b64.EncodeToString([]byte("{")) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"too long", strings.Repeat("a", maxLen+1), ErrMalformed},
	}
	now := time.Unix(1_700_000_100, 0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at := now
			if c.name == "expired" {
				at = time.Unix(1_700_043_200, 0) // exp itself is already too late
			}
			_, err := Verify(c.tok, key, at)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v; want %v", err, c.want)
			}
		})
	}
}

func TestExpiryBoundary(t *testing.T) {
	if _, err := Verify(vector, key, time.Unix(1_700_043_199, 0)); err != nil {
		t.Fatalf("one second before exp: %v", err)
	}
	if _, err := Verify(vector, key, time.Unix(1_700_043_200, 0)); !errors.Is(err, ErrExpired) {
		t.Fatalf("at exp: %v; want ErrExpired", err)
	}
}

func TestSignRoundTrip(t *testing.T) {
	a, _ := channel.ParseID("0123456789abcdef0123456789abcdef")
	b, _ := channel.ParseID("fedcba9876543210fedcba9876543210")
	now := time.Unix(1_800_000_000, 0)
	for _, c := range []Claims{
		{Issuer: "m", IssuedAt: now, Expires: now.Add(time.Hour), User: 12},
		{Issuer: "m", IssuedAt: now, Expires: now.Add(time.Hour), Channels: []channel.ID{a, b}},
		{Issuer: "m", IssuedAt: now, Expires: now.Add(time.Hour), User: 3, Channels: []channel.ID{a}},
	} {
		got, err := Verify(Sign(c, key), key, now)
		if err != nil {
			t.Fatal(err)
		}
		if got.User != c.User || len(got.Channels) != len(c.Channels) || got.Issuer != c.Issuer || !got.Expires.Equal(c.Expires) {
			t.Fatalf("round trip of %+v = %+v", c, got)
		}
		for i := range c.Channels {
			if got.Channels[i] != c.Channels[i] {
				t.Fatalf("channel %d = %s", i, got.Channels[i])
			}
		}
	}
}

// FuzzVerify: Verify never panics, and whatever it accepts was signed with
// the key and re-signs to a token that verifies to the same claims.
func FuzzVerify(f *testing.F) {
	f.Add(vector)
	f.Add(raw(okHeader, `{"iss":"h","iat":1,"exp":9999999999,"chan":"fb9f7e13dc3d595c5aefe1a0216c27a2,0123456789abcdef0123456789abcdef"}`, key))
	f.Add(raw(`{"alg":"none"}`, `{}`, key))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(tok, key, vectorTime)
		if err != nil {
			return
		}
		if c.Issuer == "" || (c.User == 0 && len(c.Channels) == 0) || !vectorTime.Before(c.Expires) {
			t.Fatalf("accepted invalid claims %+v", c)
		}
		if _, err := Verify(tok, []byte("another key"), vectorTime); err == nil {
			t.Fatal("accepted with another key")
		}
		again, err := Verify(Sign(c, key), key, vectorTime)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-signed claims: %+v, %v; want %+v", again, err, c)
		}
	})
}
