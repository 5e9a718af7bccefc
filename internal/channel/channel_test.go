package channel

import (
	"errors"
	"strings"
	"testing"
)

func mustID(t testing.TB, s string) ID {
	t.Helper()
	id, err := ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Vectors of spec/protocol.md §4.3.
const (
	thirdPartyKey = "u9kqCo7qhKIQ8RML9xUGNmcZLVWmS8OsR2UN9jsZuaCY3aqPKGENRWmA36f9r47FHnqXlKuMvgsl0hnft7qCAN8iXHw94nHS4D6dxA07BX1lUjwuMJ0t73Z9wJY25Mpu"
	specKey       = "SECURITYKEY123456"
	specPrivate   = "46a437d2336d4a88e4e9b3cd956ecf45:6221e0eb48981fce67cf4756e82e8102.502ea11ad475951470c21772188306065f0d307d"
	specPublic    = "6221e0eb48981fce67cf4756e82e8102.405bcc6b7dd0eb8c9c0a9a176071cc2e60f40432"
	specShared    = "fb9f7e13dc3d595c5aefe1a0216c27a2.7c5beeee32fc22bc11109c57a63dbc52467b8c99"
)

func TestSignatureVectors(t *testing.T) {
	s := NewSigner([]byte(thirdPartyKey), SHA1)
	for data, want := range map[string]string{
		"f0e5d42369441879d7e176c96cbbff2d":                                  "26f59cab4eab972ec7dacec39a4355a3d7627717",
		"3c8264bab589b0de7174e7b0523a40db:c18beb389c3e49131dbb2dde597df615": "e4e4307e2c1485c9310f3a726c5af17ba380b828",
	} {
		if got := s.SignHex(data); got != want {
			t.Errorf("SignHex(%s) = %s, want %s", data, got, want)
		}
		if !s.Verify(data, want) {
			t.Errorf("Verify(%s) refused its vector", data)
		}
	}
	s = NewSigner([]byte(specKey), SHA1)
	priv := mustID(t, "46a437d2336d4a88e4e9b3cd956ecf45")
	pub := mustID(t, "6221e0eb48981fce67cf4756e82e8102")
	shared := mustID(t, "fb9f7e13dc3d595c5aefe1a0216c27a2")
	if got := s.SignPrivate(priv, pub); got != specPrivate {
		t.Errorf("SignPrivate = %s", got)
	}
	if got := s.SignPublic(pub); got != specPublic {
		t.Errorf("SignPublic = %s", got)
	}
	if got := s.SignChannel(shared); got != specShared {
		t.Errorf("SignChannel = %s", got)
	}
	raw := s.Sign([]byte("public:" + pub.String()))
	if !s.VerifyPublic(pub, raw) || s.VerifyPublic(priv, raw) || s.VerifyPublic(pub, raw[1:]) {
		t.Error("VerifyPublic does not match the public signature exactly")
	}
}

func TestSHA256AndVerifyEdges(t *testing.T) {
	s := NewSigner([]byte(specKey), SHA256)
	sig := s.SignHex("abc")
	if len(sig) != 64 || !s.Verify("abc", sig) {
		t.Fatalf("sha256 signature %q does not verify", sig)
	}
	for _, bad := range []string{"", sig[:40], strings.ToUpper(sig), sig[:63] + "g", sig + "00"} {
		if s.Verify("abc", bad) {
			t.Errorf("Verify accepted %q", bad)
		}
	}
	if NewSigner([]byte(specKey), SHA1).Verify("abc", sig) {
		t.Error("a sha256 signature verified under sha1")
	}
	if a, err := ParseAlgo("sha256"); err != nil || a != SHA256 || a.String() != "sha256" {
		t.Errorf("ParseAlgo(sha256) = %v, %v", a, err)
	}
	if _, err := ParseAlgo("md5"); err == nil {
		t.Error("ParseAlgo accepted md5")
	}
}

func TestParseID(t *testing.T) {
	for _, bad := range []string{"", "fb9f7e13dc3d595c5aefe1a0216c27a", "FB9F7E13DC3D595C5AEFE1A0216C27A2", "fb9f7e13dc3d595c5aefe1a0216c27a2a", "zb9f7e13dc3d595c5aefe1a0216c27a2"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
	id := mustID(t, "fb9f7e13dc3d595c5aefe1a0216c27a2")
	if id.String() != "fb9f7e13dc3d595c5aefe1a0216c27a2" || id.IsZero() {
		t.Error("ParseID does not round-trip")
	}
	if b, ok := IDFromBytes(id[:]); !ok || b != id {
		t.Error("IDFromBytes does not round-trip")
	}
	if _, ok := IDFromBytes(id[:15]); ok {
		t.Error("IDFromBytes accepted 15 bytes")
	}
}

func TestParseList(t *testing.T) {
	s := NewSigner([]byte(specKey), SHA1)
	sub := ListOptions{Signer: s, RequireSignature: true, MaxElements: 100}
	trusted := ListOptions{Signer: s, MaxElements: 100}
	priv, pub := mustID(t, "46a437d2336d4a88e4e9b3cd956ecf45"), mustID(t, "6221e0eb48981fce67cf4756e82e8102")
	shared := mustID(t, "fb9f7e13dc3d595c5aefe1a0216c27a2")

	got, err := ParseList(specPrivate+"/"+specShared, sub)
	if err != nil {
		t.Fatal(err)
	}
	want := []Element{{ID: priv, Public: pub, HasPublic: true}, {ID: shared}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("ParseList = %+v, want %+v", got, want)
	}
	// Empty elements are skipped, duplicates collapse.
	got, err = ParseList("/"+specShared+"//"+specShared+"/", sub)
	if err != nil || len(got) != 1 || got[0].ID != shared {
		t.Fatalf("with empties and a duplicate: %+v %v", got, err)
	}
	// Trusted lists take bare ids.
	got, err = ParseList(priv.String()+"/"+specShared, trusted)
	if err != nil || len(got) != 2 || got[0].ID != priv || got[1].ID != shared {
		t.Fatalf("trusted: %+v %v", got, err)
	}

	tampered := specShared[:len(specShared)-1] + "8"
	many := strings.Repeat(specShared+"/", 101)
	cases := []struct {
		name, list string
		opt        ListOptions
		want       error
	}{
		{"empty", "", sub, ErrNoChannels},
		{"only slashes", "//", sub, ErrNoChannels},
		{"unsigned subscriber", shared.String(), sub, ErrWrongChannel},
		{"tampered", tampered, sub, ErrWrongChannel},
		{"tampered trusted", tampered, trusted, ErrWrongChannel},
		{"public id as channel", specPublic, sub, ErrWrongChannel},
		{"one bad poisons all", specShared + "/" + tampered, sub, ErrWrongChannel},
		{"unsigned pair trusted", priv.String() + ":" + pub.String(), trusted, ErrWrongChannel},
		{"upper-case id", strings.ToUpper(shared.String()), trusted, ErrWrongChannel},
		{"upper-case signature", strings.ToUpper(specShared[:32]) + specShared[32:], sub, ErrWrongChannel},
		{"short signature", shared.String() + ".abc", trusted, ErrWrongChannel},
		{"long signature", shared.String() + "." + strings.Repeat("a", 130), trusted, ErrWrongChannel},
		{"bad public id", priv.String() + ":xyz.00000000000000000000000000000000", sub, ErrWrongChannel},
		{"two dots", specShared + ".00", sub, ErrWrongChannel},
		{"no signer", specShared, ListOptions{RequireSignature: true}, ErrWrongChannel},
		{"too many", many, sub, ErrTooManyChannels},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseList(tc.list, tc.opt)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("ParseList(%.60q) = %v, %v; want %v", tc.list, got, err, tc.want)
			}
		})
	}
	// Exactly the maximum is fine, duplicates included.
	if _, err := ParseList(strings.Repeat(specShared+"/", 100), sub); err != nil {
		t.Fatalf("100 elements: %v", err)
	}
}

func FuzzParseList(f *testing.F) {
	for _, seed := range []string{specPrivate + "/" + specShared, specPublic, "", "/", specShared + "/x", "a:b.c", strings.Repeat("0", 32) + ":" + strings.Repeat("1", 32) + "." + strings.Repeat("2", 40)} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	s := NewSigner([]byte(specKey), SHA1)
	f.Fuzz(func(t *testing.T, list string, require bool) {
		opt := ListOptions{Signer: s, RequireSignature: require, MaxElements: 10}
		got, err := ParseList(list, opt)
		if err != nil {
			if got != nil {
				t.Fatal("elements returned with an error")
			}
			return
		}
		if len(got) == 0 || len(got) > opt.MaxElements {
			t.Fatalf("%d elements accepted", len(got))
		}
		for _, e := range got {
			// Whatever was accepted is something the key could have signed.
			signed := s.SignChannel(e.ID)
			if e.HasPublic {
				signed = s.SignPrivate(e.ID, e.Public)
			}
			if _, err := ParseList(signed, ListOptions{Signer: s, RequireSignature: true}); err != nil {
				t.Fatalf("re-signed %q does not parse: %v", signed, err)
			}
			if require && !strings.Contains(list, signed) {
				t.Fatalf("accepted %+v, but %q does not carry its signature", e, list)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	s := NewSigner([]byte(specKey), SHA1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseList(specPrivate+"/"+specShared, ListOptions{Signer: s, RequireSignature: true}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignHex(b *testing.B) {
	s := NewSigner([]byte(specKey), SHA1)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.SignHex("fb9f7e13dc3d595c5aefe1a0216c27a2")
	}
}
