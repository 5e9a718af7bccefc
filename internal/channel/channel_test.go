package channel

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"strings"
	"sync"
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

// Vectors computed independently of this package for the signing rules of
// docs/protocol.md, "Channels".
const (
	thirdPartyKey = "u9kqCo7qhKIQ8RML9xUGNmcZLVWmS8OsR2UN9jsZuaCY3aqPKGENRWmA36f9r47FHnqXlKuMvgsl0hnft7qCAN8iXHw94nHS4D6dxA07BX1lUjwuMJ0t73Z9wJY25Mpu"
	specKey       = "SECURITYKEY123456"
	specPrivID    = "46a437d2336d4a88e4e9b3cd956ecf45"
	specPubID     = "6221e0eb48981fce67cf4756e82e8102"
	specSharedID  = "fb9f7e13dc3d595c5aefe1a0216c27a2"
	specPrivate   = specPrivID + ":" + specPubID + ".502ea11ad475951470c21772188306065f0d307d"
	specPublic    = specPubID + ".405bcc6b7dd0eb8c9c0a9a176071cc2e60f40432"
	specShared    = specSharedID + ".7c5beeee32fc22bc11109c57a63dbc52467b8c99"
)

func TestSignatureVectors(t *testing.T) {
	s := NewSigner([]byte(thirdPartyKey), SHA1)
	for _, v := range []struct{ data, sig string }{
		{"f0e5d42369441879d7e176c96cbbff2d", "26f59cab4eab972ec7dacec39a4355a3d7627717"},
		{"3c8264bab589b0de7174e7b0523a40db:c18beb389c3e49131dbb2dde597df615", "e4e4307e2c1485c9310f3a726c5af17ba380b828"},
	} {
		if got := s.SignHex(v.data); got != v.sig {
			t.Errorf("SignHex(%s) = %s, want %s", v.data, got, v.sig)
		}
		if !s.Verify(v.data, v.sig) {
			t.Errorf("Verify(%s) refused its vector", v.data)
		}
		raw, _ := hex.DecodeString(v.sig)
		if !s.VerifyRaw(v.data, raw) || !hmac.Equal(s.Sign([]byte(v.data)), raw) {
			t.Errorf("raw forms of %s disagree", v.data)
		}
	}

	s = NewSigner([]byte(specKey), SHA1)
	priv, pub, shared := mustID(t, specPrivID), mustID(t, specPubID), mustID(t, specSharedID)
	if got := s.SignPrivate(priv, pub); got != specPrivate {
		t.Errorf("SignPrivate = %s", got)
	}
	if got := s.SignPublic(pub); got != specPublic {
		t.Errorf("SignPublic = %s", got)
	}
	if got := s.SignChannel(shared); got != specShared {
		t.Errorf("SignChannel = %s", got)
	}
	raw := s.Sign([]byte("public:" + specPubID))
	if !s.VerifyPublic(pub, raw) {
		t.Error("VerifyPublic refused the public signature")
	}
	for name, bad := range map[string]func() bool{
		"other id":       func() bool { return s.VerifyPublic(priv, raw) },
		"short":          func() bool { return s.VerifyPublic(pub, raw[1:]) },
		"long":           func() bool { return s.VerifyPublic(pub, append(raw[:len(raw):len(raw)], 0)) },
		"empty":          func() bool { return s.VerifyPublic(pub, nil) },
		"channel sig":    func() bool { return s.VerifyPublic(pub, s.Sign([]byte(specPubID))) },
		"raw wrong data": func() bool { return s.VerifyRaw(specPubID, raw) },
	} {
		if bad() {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestAgainstStdlib checks the cached HMACs against crypto/hmac across key
// lengths around the block size (a long key is hashed first) and data lengths
// around the scratch buffer.
func TestAgainstStdlib(t *testing.T) {
	for _, algo := range []Algo{SHA1, SHA256} {
		newHash := sha1.New
		if algo == SHA256 {
			newHash = sha256.New
		}
		for _, keyLen := range []int{0, 1, 17, 63, 64, 65, 128, 300} {
			key := []byte(strings.Repeat("k", keyLen))
			s := NewSigner(key, algo)
			clear(key) // NewSigner must have copied it
			key = []byte(strings.Repeat("k", keyLen))
			for _, dataLen := range []int{0, 1, 32, 65, scratchSize - 1, scratchSize, scratchSize + 1, 3*scratchSize + 7} {
				data := strings.Repeat("d", dataLen)
				m := hmac.New(newHash, key)
				m.Write([]byte(data))
				want := m.Sum(nil)
				if got := s.Sign([]byte(data)); !hmac.Equal(got, want) {
					t.Fatalf("%v key %d data %d: Sign differs from crypto/hmac", algo, keyLen, dataLen)
				}
				if got := s.SignHex(data); got != hex.EncodeToString(want) {
					t.Fatalf("%v key %d data %d: SignHex differs from crypto/hmac", algo, keyLen, dataLen)
				}
				if !s.Verify(data, hex.EncodeToString(want)) || !s.VerifyRaw(data, want) {
					t.Fatalf("%v key %d data %d: own signature refused", algo, keyLen, dataLen)
				}
			}
		}
	}
}

func TestSignerConcurrent(t *testing.T) {
	s := NewSigner([]byte(specKey), SHA1)
	shared := mustID(t, specSharedID)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if s.SignChannel(shared) != specShared || !s.Verify(specSharedID, specShared[33:]) {
					t.Error("concurrent use gave a wrong signature")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestVerifyEdges(t *testing.T) {
	s := NewSigner([]byte(specKey), SHA256)
	sig := s.SignHex("abc")
	if len(sig) != 64 || !s.Verify("abc", sig) {
		t.Fatalf("sha256 signature %q does not verify", sig)
	}
	for name, bad := range map[string]string{
		"empty":         "",
		"sha1 length":   sig[:40],
		"upper case":    strings.ToUpper(sig),
		"non-hex":       sig[:63] + "g",
		"too long":      sig + "00",
		"odd length":    sig[:63],
		"flipped digit": tamper(sig, 10),
	} {
		if s.Verify("abc", bad) {
			t.Errorf("%s: Verify accepted %q", name, bad)
		}
	}
	if NewSigner([]byte(specKey), SHA1).Verify("abc", sig) {
		t.Error("a sha256 signature verified under sha1")
	}
	if NewSigner([]byte(specKey+"x"), SHA256).Verify("abc", sig) {
		t.Error("a signature verified under another key")
	}
}

// tamper changes the hex digit at i to another hex digit.
func tamper(s string, i int) string {
	c := byte('0')
	if s[i] == '0' {
		c = '1'
	}
	return s[:i] + string(c) + s[i+1:]
}

func TestAlgo(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Algo
		ok   bool
	}{
		{"sha1", SHA1, true},
		{"sha256", SHA256, true},
		{"SHA1", 0, false},
		{"sha512", 0, false},
		{"md5", 0, false},
		{"", 0, false},
		{" sha1", 0, false},
	} {
		a, err := ParseAlgo(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (a != tc.want || a.String() != tc.in)) {
			t.Errorf("ParseAlgo(%q) = %v, %v", tc.in, a, err)
		}
		if err != nil && !strings.Contains(err.Error(), "sha256") {
			t.Errorf("ParseAlgo(%q) error %q does not say what is accepted", tc.in, err)
		}
	}
	if got := Algo(7).String(); got != "Algo(7)" {
		t.Errorf("Algo(7).String() = %q", got)
	}
	if s := NewSigner(nil, Algo(7)); s.Algo() != SHA1 || s.Size() != sha1.Size {
		t.Errorf("unknown algo gave %v, size %d", s.Algo(), s.Size())
	}
	if NewSigner(nil, SHA256).Size() != sha256.Size {
		t.Error("sha256 size")
	}
}

func TestParseID(t *testing.T) {
	for _, bad := range []string{
		"",
		specSharedID[:31],
		specSharedID + "a",
		strings.ToUpper(specSharedID),
		"z" + specSharedID[1:],
		specSharedID[:31] + "G",
		specSharedID[:31] + " ",
	} {
		if _, err := ParseID(bad); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseID(%q) = %v", bad, err)
		}
	}
	id := mustID(t, specSharedID)
	if id.String() != specSharedID || id.IsZero() || string(id.AppendHex([]byte("x"))) != "x"+specSharedID {
		t.Error("ParseID does not round-trip")
	}
	if !mustID(t, strings.Repeat("0", 32)).IsZero() {
		t.Error("zero id not zero")
	}
	if b, ok := IDFromBytes(id[:]); !ok || b != id {
		t.Error("IDFromBytes does not round-trip")
	}
	for _, n := range []int{0, 15, 17} {
		if _, ok := IDFromBytes(make([]byte, n)); ok {
			t.Errorf("IDFromBytes accepted %d bytes", n)
		}
	}
}

func TestParseListAccepts(t *testing.T) {
	s := NewSigner([]byte(specKey), SHA1)
	s256 := NewSigner([]byte(specKey), SHA256)
	sub := ListOptions{Signer: s, RequireSignature: true, MaxElements: 100}
	trusted := ListOptions{Signer: s, MaxElements: 100}
	priv, pub, shared := mustID(t, specPrivID), mustID(t, specPubID), mustID(t, specSharedID)
	other := mustID(t, "0123456789abcdef0123456789abcdef")
	pair := Element{ID: priv, Public: pub, HasPublic: true}

	cases := []struct {
		name, list string
		opt        ListOptions
		want       []Element
	}{
		{"spec config", specPrivate + "/" + specShared, sub, []Element{pair, {ID: shared}}},
		{"shared only", specShared, sub, []Element{{ID: shared}}},
		{"empties skipped", "/" + specPrivate + "//" + specShared + "/", sub, []Element{pair, {ID: shared}}},
		{"duplicate collapses", specShared + "/" + specPrivate + "/" + specShared, sub, []Element{{ID: shared}, pair}},
		{"first form kept", specPrivID + "/" + specPrivate, trusted, []Element{{ID: priv}}},
		{"first pair kept", specPrivate + "/" + specPrivID, trusted, []Element{pair}},
		{"trusted bare ids", specPrivID + "/" + specSharedID, trusted, []Element{{ID: priv}, {ID: shared}}},
		{"trusted signed", specShared, trusted, []Element{{ID: shared}}},
		{"trusted pair", specPrivate, trusted, []Element{pair}},
		{"trusted bare without signer", specSharedID, ListOptions{}, []Element{{ID: shared}}},
		{"unlimited", specShared + "/" + other.String(), ListOptions{Signer: s}, []Element{{ID: shared}, {ID: other}}},
		{"sha256", s256.SignPrivate(priv, pub) + "/" + s256.SignChannel(other), ListOptions{Signer: s256, RequireSignature: true}, []Element{pair, {ID: other}}},
		{"exactly max", strings.Repeat(specShared+"/", 100), sub, []Element{{ID: shared}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseList(tc.list, tc.opt)
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("ParseList(%.80q) = %v, %v; want %v", tc.list, got, err, tc.want)
			}
		})
	}
}

func TestParseListRefuses(t *testing.T) {
	s := NewSigner([]byte(specKey), SHA1)
	s256 := NewSigner([]byte(specKey), SHA256)
	sub := ListOptions{Signer: s, RequireSignature: true, MaxElements: 100}
	trusted := ListOptions{Signer: s, MaxElements: 100}
	shared := mustID(t, specSharedID)
	sharedSig := specShared[33:]
	tampered := tamper(specShared, len(specShared)-1)
	garbage := strings.Repeat("x/", 101) // too many is judged before syntax

	cases := []struct {
		name, list string
		opt        ListOptions
		want       error
	}{
		{"empty", "", sub, ErrNoChannels},
		{"only slashes", "///", trusted, ErrNoChannels},
		{"too many", strings.Repeat(specShared+"/", 101), sub, ErrTooManyChannels},
		{"too many garbage", garbage, sub, ErrTooManyChannels},
		{"too many trusted", strings.Repeat(specSharedID+"/", 3), ListOptions{MaxElements: 2}, ErrTooManyChannels},

		{"unsigned subscriber", specSharedID, sub, ErrWrongChannel},
		{"tampered", tampered, sub, ErrWrongChannel},
		{"tampered trusted", tampered, trusted, ErrWrongChannel},
		{"other key", NewSigner([]byte("other"), SHA1).SignChannel(shared), sub, ErrWrongChannel},
		{"public id as channel", specPublic, sub, ErrWrongChannel},
		{"public id as channel trusted", specPublic, trusted, ErrWrongChannel},
		{"public id as pair", specPubID + ":" + specPubID + specPublic[32:], sub, ErrWrongChannel},
		{"one bad poisons all", specPrivate + "/" + specShared + "/" + tampered, sub, ErrWrongChannel},
		{"one unsigned poisons all", specShared + "/" + specPrivID, sub, ErrWrongChannel},
		{"one malformed poisons all trusted", specSharedID + "/x", trusted, ErrWrongChannel},
		{"unsigned pair trusted", specPrivID + ":" + specPubID, trusted, ErrWrongChannel},
		{"unsigned pair without signer", specPrivID + ":" + specPubID, ListOptions{}, ErrWrongChannel},
		{"pair signed as channel", specPrivID + ":" + specPubID + "." + s.SignHex(specPrivID), trusted, ErrWrongChannel},
		{"swapped pair", specPubID + ":" + specPrivID + specPrivate[65:], sub, ErrWrongChannel},
		{"no signer", specShared, ListOptions{RequireSignature: true}, ErrWrongChannel},
		{"no signer trusted", specShared, ListOptions{}, ErrWrongChannel},
		{"sha1 signature, sha256 key", specShared, ListOptions{Signer: s256}, ErrWrongChannel},

		{"upper-case id", strings.ToUpper(specSharedID), trusted, ErrWrongChannel},
		{"upper-case signed id", strings.ToUpper(specSharedID) + specShared[32:], sub, ErrWrongChannel},
		{"upper-case signature", specSharedID + "." + strings.ToUpper(sharedSig), sub, ErrWrongChannel},
		{"upper-case public", specPrivID + ":" + strings.ToUpper(specPubID) + specPrivate[65:], sub, ErrWrongChannel},
		{"id 31", specSharedID[:31], trusted, ErrWrongChannel},
		{"id 33", specSharedID + "a", trusted, ErrWrongChannel},
		{"id 31 signed", specSharedID[1:] + "." + sharedSig, sub, ErrWrongChannel},
		{"public 31", specPrivID + ":" + specPubID[1:] + specPrivate[65:], sub, ErrWrongChannel},
		{"public 33", specPrivID + ":" + specPubID + "a" + specPrivate[65:], sub, ErrWrongChannel},
		{"empty public", specPrivID + ":" + specPrivate[65:], sub, ErrWrongChannel},
		{"signature 31", specSharedID + "." + strings.Repeat("a", 31), trusted, ErrWrongChannel},
		{"signature 129", specSharedID + "." + strings.Repeat("a", 129), trusted, ErrWrongChannel},
		{"signature 64 under sha1", specSharedID + "." + s256.SignHex(specSharedID), trusted, ErrWrongChannel},
		{"signature 41", specShared + "0", trusted, ErrWrongChannel},
		{"empty signature", specSharedID + ".", trusted, ErrWrongChannel},
		{"two dots", specShared + ".00", sub, ErrWrongChannel},
		{"dot before pair", specSharedID + "." + sharedSig + ":" + specPubID, sub, ErrWrongChannel},
		{"two pairs", specPrivID + ":" + specPubID + ":" + specPubID + specPrivate[65:], sub, ErrWrongChannel},
		{"wrong separator", specSharedID + "-" + sharedSig, sub, ErrWrongChannel},
		{"space", " " + specShared, sub, ErrWrongChannel},
		{"trailing space", specShared + " ", sub, ErrWrongChannel},
		{"url-encoded slash", specShared + "%2F" + specShared, sub, ErrWrongChannel},
		{"non-ascii", specShared[:len(specShared)-1] + "é", sub, ErrWrongChannel},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseList(tc.list, tc.opt)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("ParseList(%.80q) = %v, %v; want %v", tc.list, got, err, tc.want)
			}
		})
	}
}

// TestParseListLong covers lists past the point where duplicates are found
// with a map.
func TestParseListLong(t *testing.T) {
	s := NewSigner([]byte(specKey), SHA1)
	var parts []string
	var want []ID
	for i := range 3 * linearDedup {
		var id ID
		id[0], id[1] = byte(i), 1
		want = append(want, id)
		parts = append(parts, s.SignChannel(id), id.String()) // each twice
	}
	got, err := ParseList(strings.Join(parts, "/"), ListOptions{Signer: s})
	if err != nil || len(got) != len(want) {
		t.Fatalf("got %d elements, %v; want %d", len(got), err, len(want))
	}
	for i, e := range got {
		if e.ID != want[i] || e.HasPublic {
			t.Fatalf("element %d = %v, want %v", i, e, want[i])
		}
	}
}

func TestParseListErrorDetail(t *testing.T) {
	s := NewSigner([]byte(specKey), SHA1)
	for list, want := range map[string]string{
		specShared + "/" + specSharedID:                "element 1",
		specSharedID:                                   "not signed",
		specPrivID + ":" + specPubID:                   "pair not signed",
		tamper(specShared, 40):                         "bad signature",
		strings.ToUpper(specSharedID):                  "lower-case hex",
		strings.Repeat(specShared+"/", 3) + specPublic: "bad signature",
	} {
		_, err := ParseList(list, ListOptions{Signer: s, RequireSignature: true, MaxElements: 100})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseList(%.40q) error %v, want it to mention %q", list, err, want)
		}
	}
}

// v4Element is the reference server's pattern, used as an oracle only.
var v4Element = regexp.MustCompile(`^([a-f0-9]{32})(?::([a-f0-9]{32}))?(?:\.([a-f0-9]{32,128}))?$`)

// oracle judges list with the regexp and crypto/hmac, independently of the
// code under test.
func oracle(list string, opt ListOptions, key []byte, newHash func() hash.Hash) error {
	var parts []string
	for _, p := range strings.Split(list, "/") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	switch {
	case len(parts) == 0:
		return ErrNoChannels
	case opt.MaxElements > 0 && len(parts) > opt.MaxElements:
		return ErrTooManyChannels
	}
	for _, p := range parts {
		m := v4Element.FindStringSubmatch(p)
		switch {
		case m == nil:
			return ErrWrongChannel
		case m[3] == "" && (m[2] != "" || opt.RequireSignature):
			return ErrWrongChannel
		case m[3] != "":
			body := m[1]
			if m[2] != "" {
				body += ":" + m[2]
			}
			h := hmac.New(newHash, key)
			h.Write([]byte(body))
			if hex.EncodeToString(h.Sum(nil)) != m[3] {
				return ErrWrongChannel
			}
		}
	}
	return nil
}

func FuzzParseList(f *testing.F) {
	for _, seed := range []string{
		specPrivate + "/" + specShared,
		specPrivate,
		specShared,
		specPublic,
		specPrivID + "/" + specSharedID,
		specPrivID + ":" + specPubID,
		"",
		"/",
		specShared + "//" + specShared + "/",
		specShared + "/x",
		"a:b.c",
		strings.Repeat("0", 32) + ":" + strings.Repeat("1", 32) + "." + strings.Repeat("2", 40),
	} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	key := []byte(specKey)
	s := NewSigner(key, SHA1)
	f.Fuzz(func(t *testing.T, list string, require bool) {
		opt := ListOptions{Signer: s, RequireSignature: require, MaxElements: 10}
		got, err := ParseList(list, opt)
		if want := oracle(list, opt, key, sha1.New); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Fatalf("ParseList(%q, require=%v) = %v, oracle says %v", list, require, err, want)
		}
		if err != nil {
			if got != nil {
				t.Fatal("elements returned with an error")
			}
			return
		}
		if len(got) == 0 || len(got) > opt.MaxElements {
			t.Fatalf("%d elements accepted", len(got))
		}
		seen := make(map[ID]bool)
		for _, e := range got {
			if seen[e.ID] {
				t.Fatalf("%v listed twice", e.ID)
			}
			seen[e.ID] = true
			// Whatever was accepted is something the key could have signed.
			signed := s.SignChannel(e.ID)
			if e.HasPublic {
				signed = s.SignPrivate(e.ID, e.Public)
			}
			again, err := ParseList(signed, ListOptions{Signer: s, RequireSignature: true, MaxElements: 1})
			if err != nil || len(again) != 1 || again[0] != e {
				t.Fatalf("re-signed %q gives %v, %v; want %v", signed, again, err, e)
			}
			if e.HasPublic && !strings.Contains(list, signed) {
				t.Fatalf("pair %+v accepted, but %q does not carry its signature", e, list)
			}
			if require && !strings.Contains(list, signed) {
				t.Fatalf("accepted %+v, but %q does not carry its signature", e, list)
			}
		}
	})
}

// BenchmarkHMACNew is the baseline the cached HMACs of a Signer are measured
// against: crypto/hmac built per call.
func BenchmarkHMACNew(b *testing.B) {
	key := []byte(specKey)
	b.ReportAllocs()
	var buf [2 * sha1.Size]byte
	for b.Loop() {
		m := hmac.New(sha1.New, key)
		m.Write([]byte(specSharedID))
		_ = string(hex.AppendEncode(buf[:0], m.Sum(nil)))
	}
}

func BenchmarkSignHex(b *testing.B) {
	s := NewSigner([]byte(specKey), SHA1)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.SignHex(specSharedID)
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, algo := range []Algo{SHA1, SHA256} {
		b.Run(algo.String(), func(b *testing.B) {
			s := NewSigner([]byte(specKey), algo)
			sig := s.SignHex(specSharedID)
			b.ReportAllocs()
			for b.Loop() {
				if !s.Verify(specSharedID, sig) {
					b.Fatal("refused")
				}
			}
		})
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	s := NewSigner([]byte(specKey), SHA1)
	sig := specShared[33:]
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !s.Verify(specSharedID, sig) {
				b.Fatal("refused")
			}
		}
	})
}

func BenchmarkParseList(b *testing.B) {
	s := NewSigner([]byte(specKey), SHA1)
	opt := ListOptions{Signer: s, RequireSignature: true, MaxElements: 100}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseList(specPrivate+"/"+specShared, opt); err != nil {
			b.Fatal(err)
		}
	}
}
