// Package tenant is shared mode's directory of portals (docs/shared-mode.md):
// one pushpull serving many Bitrix installations, as Bitrix's cloud push
// server does. A tenant is (clientId, host); its signing key is derived from
// the server's key, its channels live in a namespace of their own, and the
// directory keeps every tenant in memory so that the subscribe path looks
// one up with a map read.
package tenant

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"sync"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/store"
)

// ClientIDLen is the length of a client id: the portal's public licence
// hash, 32 lower-case letters and digits.
const ClientIDLen = 32

// MaxHostLen is the longest host name a tenant may have; the reference
// server never matches a longer one.
const MaxHostLen = 32

// ValidClientID reports whether s has the shape of a client id.
func ValidClientID(s string) bool {
	if len(s) != ClientIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// ValidHost reports whether s is a host name a tenant may have: 2 to 32
// lower-case letters, digits, dots and dashes (a request's Host is lower-cased
// and stripped of its port before it is looked up).
func ValidHost(s string) bool {
	if len(s) < 2 || len(s) > MaxHostLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// DeriveKey is the tenant's security key, which the portal signs its
// channels, request bodies and tokens with: hex(HMAC-SHA256(global,
// "push"+clientID+host+"server")), the key Bitrix's cloud server hands a
// registering portal (spec/protocol.md §4.6).
func DeriveKey(global []byte, clientID, host string) string {
	m := hmac.New(sha256.New, global)
	m.Write([]byte("push" + clientID + host + "server"))
	return hex.EncodeToString(m.Sum(nil))
}

// deriveMask is the tenant's channel namespace. It is secret (keyed with the
// server's key) and never leaves the server, so no portal can aim at the
// namespace of another.
func deriveMask(global []byte, clientID, host string) channel.ID {
	m := hmac.New(sha256.New, global)
	m.Write([]byte("pushpull:tenant-namespace:" + clientID + "\n" + host))
	var id channel.ID
	copy(id[:], m.Sum(nil))
	return id
}

// Tenant is one portal as the push server sees it. It is immutable once
// built, apart from its signer, made on first use.
type Tenant struct {
	ClientID string
	Host     string
	// Key is the hex security key (DeriveKey); the home tenant's is the
	// server's own key.
	Key string
	// Home is the portal of this server's own REST side: its channels are
	// the unscoped ones, which pull's methods create and publish to.
	Home bool

	mask   channel.ID
	algo   channel.Algo
	once   sync.Once
	signer *channel.Signer
}

func newTenant(global []byte, algo channel.Algo, clientID, host string) *Tenant {
	return &Tenant{
		ClientID: clientID,
		Host:     host,
		Key:      DeriveKey(global, clientID, host),
		mask:     deriveMask(global, clientID, host),
		algo:     algo,
	}
}

// Signer verifies the tenant's signatures. It is built on first use, so
// that thousands of registered but idle tenants cost no HMAC state.
func (t *Tenant) Signer() *channel.Signer {
	t.once.Do(func() {
		if t.signer == nil {
			t.signer = channel.NewSigner([]byte(t.Key), t.algo)
		}
	})
	return t.signer
}

// Scope maps a channel id a tenant's request names to where it lives inside
// the server; it is its own inverse, so Scope also maps a stored channel
// back to the id the tenant knows. Two tenants naming the same id reach
// different channels. The home tenant's scope is the identity.
func (t *Tenant) Scope(id channel.ID) channel.ID {
	for i := range id {
		id[i] ^= t.mask[i]
	}
	return id
}

// Scoped reports whether Scope changes ids (every tenant but the home one).
func (t *Tenant) Scoped() bool { return t.mask != channel.ID{} }

// Origins of a stored tenant (store.Tenant.Origin).
const (
	OriginRegistered = store.TenantRegistered
	OriginOperator   = store.TenantOperator
)
