// Package token makes and verifies the JWT that protocol version 5 clients
// connect with (docs/protocol-v5.md, "Connecting"): HS256 only, signed with
// the channel signature key, naming a tenant (iss), a user (sub) and channels
// (chan). It is deliberately narrow: anything but a compact HS256 token with
// exactly these claims is refused, so there is no algorithm confusion to get
// wrong.
package token

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

// Claims is what a token grants.
type Claims struct {
	// Issuer is the tenant: the portal's host_id (Bitrix) or member_id
	// (pushpull's own REST).
	Issuer   string
	IssuedAt time.Time
	Expires  time.Time
	// User is the sub claim, 0 when absent.
	User int64
	// Channels are the chan claim's unsigned channel ids.
	Channels []channel.ID
}

// Errors of Verify; every failure wraps one of them.
var (
	ErrMalformed = errors.New("malformed token")
	ErrAlgorithm = errors.New("token algorithm is not HS256")
	ErrSignature = errors.New("token signature does not match")
	ErrExpired   = errors.New("token has expired")
	ErrClaims    = errors.New("token claims are missing or invalid")
)

// maxLen bounds what is decoded at all; a real token is a few hundred bytes.
const maxLen = 8 << 10

var b64 = base64.RawURLEncoding

// header is the only header Sign writes; Bitrix writes the same.
const header = `{"typ":"JWT","alg":"HS256"}`

// Sign returns the compact token for c, signed with key.
func Sign(c Claims, key []byte) string {
	p := payload{Iss: c.Issuer, Iat: strconv.AppendInt(nil, c.IssuedAt.Unix(), 10),
		Exp: strconv.AppendInt(nil, c.Expires.Unix(), 10)}
	if c.User > 0 {
		sub := strconv.FormatInt(c.User, 10)
		p.Sub = &sub
	}
	if len(c.Channels) > 0 {
		ids := make([]string, len(c.Channels))
		for i, id := range c.Channels {
			ids[i] = id.String()
		}
		joined := strings.Join(ids, ",")
		p.Chan = &joined
	}
	body, _ := json.Marshal(p) // strings and numbers only: cannot fail
	signing := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString(body)
	return signing + "." + b64.EncodeToString(mac(key, signing))
}

// payload is the claims as on the wire. The times stay raw so that a
// string, a float or an out-of-range value is refused rather than coerced.
type payload struct {
	Iss  string          `json:"iss"`
	Iat  json.RawMessage `json:"iat"`
	Exp  json.RawMessage `json:"exp"`
	Sub  *string         `json:"sub,omitempty"`
	Chan *string         `json:"chan,omitempty"`
}

// Verify checks tok's algorithm, signature and expiry (no leeway, as
// Bitrix's own decoder) and returns its claims. A token must name a tenant,
// its times, and a user or at least one channel.
func Verify(tok string, key []byte, now time.Time) (Claims, error) {
	if len(tok) > maxLen {
		return Claims{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(tok))
	}
	h, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return Claims{}, fmt.Errorf("%w: no payload", ErrMalformed)
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return Claims{}, fmt.Errorf("%w: want three parts", ErrMalformed)
	}
	if err := checkHeader(h); err != nil {
		return Claims{}, err
	}
	gotMAC, err := b64.DecodeString(sig)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: signature: %w", ErrMalformed, err)
	}
	// The signature is checked before the payload is even decoded.
	if !hmac.Equal(gotMAC, mac(key, tok[:len(h)+1+len(p)])) {
		return Claims{}, ErrSignature
	}
	raw, err := b64.DecodeString(p)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	c, err := parseClaims(raw)
	if err != nil {
		return Claims{}, err
	}
	if !now.Before(c.Expires) {
		return Claims{}, fmt.Errorf("%w at %s", ErrExpired, c.Expires.UTC().Format(time.RFC3339))
	}
	return c, nil
}

func checkHeader(h string) error {
	raw, err := b64.DecodeString(h)
	if err != nil {
		return fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	var hd struct {
		Alg  *string `json:"alg"`
		Typ  *string `json:"typ"`
		Crit any     `json:"crit"`
	}
	if err := json.Unmarshal(raw, &hd); err != nil {
		return fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if hd.Alg == nil || *hd.Alg != "HS256" {
		return ErrAlgorithm
	}
	if hd.Typ != nil && !strings.EqualFold(*hd.Typ, "JWT") {
		return fmt.Errorf("%w: typ %q", ErrMalformed, *hd.Typ)
	}
	if hd.Crit != nil {
		// RFC 7515 §4.1.11: extensions we do not know must be refused.
		return fmt.Errorf("%w: critical header extensions", ErrMalformed)
	}
	return nil
}

func parseClaims(raw []byte) (Claims, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var p payload
	if err := dec.Decode(&p); err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if dec.More() {
		return Claims{}, fmt.Errorf("%w: data after the payload", ErrMalformed)
	}
	var c Claims
	if c.Issuer = p.Iss; c.Issuer == "" {
		return Claims{}, fmt.Errorf("%w: no iss", ErrClaims)
	}
	iat, err := seconds(p.Iat)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: iat: %w", ErrClaims, err)
	}
	exp, err := seconds(p.Exp)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: exp: %w", ErrClaims, err)
	}
	c.IssuedAt, c.Expires = time.Unix(iat, 0), time.Unix(exp, 0)
	if p.Sub != nil {
		c.User, err = strconv.ParseInt(*p.Sub, 10, 64)
		if err != nil || c.User <= 0 {
			return Claims{}, fmt.Errorf("%w: sub %q is not a user id", ErrClaims, *p.Sub)
		}
	}
	if p.Chan != nil && *p.Chan != "" {
		for _, s := range strings.Split(*p.Chan, ",") {
			id, err := channel.ParseID(s)
			if err != nil {
				return Claims{}, fmt.Errorf("%w: chan: %w", ErrClaims, err)
			}
			c.Channels = append(c.Channels, id)
		}
	}
	if c.User == 0 && len(c.Channels) == 0 {
		return Claims{}, fmt.Errorf("%w: neither sub nor chan", ErrClaims)
	}
	return c, nil
}

// seconds reads a NumericDate as whole seconds; absent, null, a string,
// fractional or out of range is an error.
func seconds(n json.RawMessage) (int64, error) {
	if len(n) == 0 || string(n) == "null" {
		return 0, errors.New("missing")
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number of seconds", string(n))
	}
	return v, nil
}

func mac(key []byte, signing string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return m.Sum(nil)
}
