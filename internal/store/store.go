// Package store is pushpull's registry: portals, applications, users, OAuth
// tokens and codes, webhooks and channels. Store is the one interface the rest
// of the server uses; its engines live in the subpackages sqlite (the
// default) and redis (cluster mode), and both pass the same conformance suite
// (package storetest).
//
// Secrets that are only ever presented back to the server (access and refresh
// tokens, authorization codes, webhook secrets, application client secrets)
// are stored as SHA-256 hashes, so a leaked database file does not hand out
// working credentials. Lookups hash the presented value; the returned record
// carries the value that was presented and leaves the other secrets of the
// record empty (see Token). A client secret is therefore shown once, when
// the application is created.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Sentinel errors. Implementations wrap them with context; test with errors.Is.
var (
	// ErrNotFound means the record does not exist or is no longer usable
	// (a used authorization code, a rotated refresh token).
	ErrNotFound = errors.New("not found")
	// ErrConflict means a record with the same unique key already exists.
	ErrConflict = errors.New("conflict")
)

// Portal is a Bitrix24 "portal" (tenant). pushpull has one default portal.
type Portal struct {
	ID       int64
	MemberID string // 32 hex characters, stable even if Domain changes
	Domain   string
	// CreatedAt is when the portal was first created.
	CreatedAt time.Time
}

// App is a registered REST application.
type App struct {
	ID       int64
	PortalID int64
	ClientID string // "local.<14 hex>.<8 digits>", also the channel type of its channels
	// ClientSecret is filled by CreateApp only: the registry keeps its hash.
	ClientSecret string
	// ClientSecretHash is HashSecret(client secret), filled by every method
	// that returns an App; check a presented secret with SecretMatches.
	ClientSecretHash string
	Name             string
	Scopes           []string
	CreatedAt        time.Time
}

// SecretMatches reports whether secret is the app's client secret, in
// constant time.
func (a App) SecretMatches(secret string) bool {
	return a.ClientSecretHash != "" &&
		subtle.ConstantTimeCompare([]byte(HashSecret(secret)), []byte(a.ClientSecretHash)) == 1
}

// User is a portal user as far as pushpull cares: whether they may receive
// anything at all (Active) and whether they may target other users (Admin).
type User struct {
	PortalID  int64
	ID        int64
	Active    bool
	Admin     bool
	CreatedAt time.Time
}

// Token is an OAuth access/refresh token pair. One record holds both, so
// revoking it (directly or by rotating its refresh token) kills both, which
// is Bitrix's documented "until first use" behaviour.
//
// Because only hashes are stored, TokenByAccess returns the record with
// RefreshToken empty, and TokenByRefresh returns it with AccessToken empty.
type Token struct {
	AccessToken    string
	RefreshToken   string
	PortalID       int64
	AppID          int64
	UserID         int64
	Scopes         []string
	AccessExpires  time.Time
	RefreshExpires time.Time
	Revoked        bool
	CreatedAt      time.Time
}

// AuthCode is an OAuth authorization code, usable once.
type AuthCode struct {
	Code     string
	PortalID int64
	AppID    int64
	UserID   int64
	Scopes   []string
	Expires  time.Time
	Used     bool
}

// Webhook is an incoming webhook: /rest/{UserID}/{Secret}/method.
type Webhook struct {
	ID       int64
	PortalID int64
	UserID   int64
	AppID    int64 // 0 = not bound to an application
	// Secret is filled by CreateWebhook and by Webhook (the presented value);
	// only its hash is stored.
	Secret    string
	Scopes    []string
	CreatedAt time.Time
	Revoked   bool
}

// Channel is one push channel row: at most one per ChannelKey.
type Channel struct {
	PortalID  int64
	AppID     int64  // 0 = not app-scoped
	UserID    int64  // 0 = shared
	Type      string // "private", "shared" or the app's client_id
	PrivateID string // 32 hex
	PublicID  string // 32 hex; "" for shared channels (UserID 0)
	Start     time.Time
	End       time.Time
}

// Key returns the key the channel is stored under.
func (c Channel) Key() ChannelKey {
	return ChannelKey{PortalID: c.PortalID, AppID: c.AppID, UserID: c.UserID, Type: c.Type}
}

// Expired reports whether the channel has to be replaced at now. Like
// Bitrix's isExpired (DATE_CREATE + TTL <= now), the end instant itself
// already counts as expired.
func (c Channel) Expired(now time.Time) bool {
	return !now.Before(c.End)
}

// ChannelKey identifies a channel. For application channels Type is the
// app's client_id (Bitrix's CHANNEL_TYPE) and AppID its id.
type ChannelKey struct {
	PortalID int64
	AppID    int64
	UserID   int64
	Type     string
}

// Store is the registry. All methods are safe for concurrent use.
type Store interface {
	// DefaultPortal returns the default portal, creating it on first call
	// with a random member_id and the domain given when the store was opened.
	DefaultPortal(ctx context.Context) (Portal, error)

	// CreateApp registers an application with a generated client_id
	// ("local.<14 hex>.<8 digits>") and a 50-character random secret.
	CreateApp(ctx context.Context, portalID int64, name string, scopes []string) (App, error)
	// App returns the application with this client_id, or ErrNotFound.
	App(ctx context.Context, clientID string) (App, error)
	// Apps lists a portal's applications in creation order.
	Apps(ctx context.Context, portalID int64) ([]App, error)

	// PutUser creates or updates a user. CreatedAt is kept from the first
	// put (set to now if zero).
	PutUser(ctx context.Context, u User) error
	// User returns a user, or ErrNotFound.
	User(ctx context.Context, portalID, userID int64) (User, error)

	// CreateToken stores a token pair. Empty AccessToken/RefreshToken are
	// generated, a zero CreatedAt is set to now; the stored token is returned.
	// Reusing an existing access or refresh token is ErrConflict.
	CreateToken(ctx context.Context, t Token) (Token, error)
	// TokenByAccess returns the token whatever its state (revoked, expired):
	// the caller decides which error to answer. Unknown -> ErrNotFound.
	TokenByAccess(ctx context.Context, access string) (Token, error)
	// TokenByRefresh is TokenByAccess by refresh token.
	TokenByRefresh(ctx context.Context, refresh string) (Token, error)
	// RotateRefresh atomically revokes the token pair holding oldRefresh and
	// stores next (filled like CreateToken). It fails with ErrNotFound if
	// oldRefresh is unknown, revoked or already rotated, so a refresh token
	// works once even under concurrent use. Refresh expiry is the caller's
	// check (it has the clock).
	RotateRefresh(ctx context.Context, oldRefresh string, next Token) (Token, error)
	// RevokeToken revokes the pair holding this access token; unknown ->
	// ErrNotFound. Revoking twice is not an error.
	RevokeToken(ctx context.Context, access string) error

	// CreateAuthCode stores an authorization code; an empty Code is
	// generated. The stored code is returned.
	CreateAuthCode(ctx context.Context, c AuthCode) (AuthCode, error)
	// UseAuthCode consumes a code once, for the application it was issued
	// to: unknown, used, expired at now (Expires <= now) or issued to
	// another app -> ErrNotFound. A code presented by another application
	// is not consumed, so a stray or hostile client cannot use it up.
	UseAuthCode(ctx context.Context, code string, appID int64, now time.Time) (AuthCode, error)

	// CreateWebhook creates a webhook with a random 16-character lowercase
	// alphanumeric secret (Bitrix's format). appID 0 = no application.
	CreateWebhook(ctx context.Context, portalID, userID, appID int64, scopes []string) (Webhook, error)
	// Webhook finds a webhook by owner and secret, revoked or not; a wrong
	// pair -> ErrNotFound.
	Webhook(ctx context.Context, userID int64, secret string) (Webhook, error)

	// ChannelFor returns the current channel for key. If there is none, or it
	// is expired at now, a fresh one (new random ids, Start=now, End=now+ttl)
	// replaces it and replaced is the old one (nil if there was none) so the
	// caller can publish channel_expire to it. Concurrent callers end up with
	// one new channel: the losers get the winner's, with replaced nil.
	ChannelFor(ctx context.Context, key ChannelKey, now time.Time, ttl time.Duration) (current Channel, replaced *Channel, err error)
	// PublicChannels returns the private channels of userIDs (user id ->
	// channel), creating missing and replacing expired ones like ChannelFor.
	// appID 0 means the users' own "private" channels; otherwise the app's
	// channels (type = its client_id; unknown app -> ErrNotFound). Replaced
	// channels are returned so the caller can publish channel_expire.
	// User id 0 and duplicates are ignored.
	PublicChannels(ctx context.Context, portalID, appID int64, userIDs []int64, now time.Time, ttl time.Duration) (channels map[int64]Channel, replaced []Channel, err error)

	// EnqueuePush stores a push job due at now and returns it.
	EnqueuePush(ctx context.Context, payload []byte, now time.Time) (PushJob, error)
	// ClaimPush returns the oldest job due at now (NextAttempt <= now) and
	// leases it: its NextAttempt moves to now+lease, so concurrent claimers
	// never get the same job within the lease. None due -> ErrNotFound.
	ClaimPush(ctx context.Context, now time.Time, lease time.Duration) (PushJob, error)
	// CompletePush deletes a job; unknown -> ErrNotFound.
	CompletePush(ctx context.Context, id int64) error
	// RetryPush counts a failed attempt and reschedules the job at next;
	// unknown -> ErrNotFound.
	RetryPush(ctx context.Context, id int64, next time.Time) error
	// PushQueueLen returns the number of jobs queued, due or not: the
	// operator's queue depth.
	PushQueueLen(ctx context.Context) (int64, error)

	Tenants

	Close() error
}

// PushJob is one queued mobile push notification.
type PushJob struct {
	ID          int64
	Payload     []byte // JSON of the notification
	Attempts    int    // failed delivery attempts so far
	NextAttempt time.Time
	CreatedAt   time.Time
}

// Channel types that are not an application's client_id.
const (
	TypePrivate = "private"
	TypeShared  = "shared"
)

const (
	lowerHex   = "0123456789abcdef"
	lowerAlnum = "abcdefghijklmnopqrstuvwxyz0123456789"
	alnum      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	digits     = "0123456789"
)

// randomString returns n characters drawn uniformly from alphabet using
// crypto/rand.
func randomString(alphabet string, n int) (string, error) {
	b := make([]byte, n)
	max := big.NewInt(int64(len(alphabet)))
	for i := range b {
		k, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("random: %w", err)
		}
		b[i] = alphabet[k.Int64()]
	}
	return string(b), nil
}

// NewClientID returns a client_id in Bitrix's local-app shape
// "local.<14 hex>.<8 digits>".
func NewClientID() (string, error) {
	h, err := randomString(lowerHex, 14)
	if err != nil {
		return "", err
	}
	d, err := randomString(digits, 8)
	if err != nil {
		return "", err
	}
	return "local." + h + "." + d, nil
}

// NewClientSecret returns a 50-character alphanumeric client secret.
func NewClientSecret() (string, error) { return randomString(alnum, 50) }

// NewWebhookSecret returns a 16-character lowercase alphanumeric secret.
func NewWebhookSecret() (string, error) { return randomString(lowerAlnum, 16) }

// NewToken returns an opaque 64-hex-character (256-bit) token, used for
// access and refresh tokens and authorization codes.
func NewToken() (string, error) { return randomString(lowerHex, 64) }

// NewChannelID returns 32 random hex characters (128 bits), the shape of
// Bitrix's md5-based channel ids.
func NewChannelID() (string, error) { return randomString(lowerHex, 32) }

// HashSecret is how secrets are stored and looked up: hex SHA-256. Exported
// so that other implementations store the same thing.
func HashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
