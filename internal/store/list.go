package store

import (
	"context"
	"time"
)

// Lister is the registry's inventory for the operator console: what
// exists, without any secret. An engine implements it next to Store; the
// console shows "not available" for one that does not.
type Lister interface {
	// Users lists a portal's users by id.
	Users(ctx context.Context, portalID int64) ([]User, error)
	// Tokens lists up to limit of a portal's token pairs, newest first,
	// revoked ones too, and how many it has in all.
	Tokens(ctx context.Context, portalID int64, limit int) (list []TokenInfo, total int, err error)
	// RevokeTokenByID revokes the pair whose TokenInfo.ID is id; unknown ->
	// ErrNotFound. Revoking twice is not an error.
	RevokeTokenByID(ctx context.Context, id string) error
	// Webhooks lists a portal's webhooks by id, Secret left empty.
	Webhooks(ctx context.Context, portalID int64) ([]Webhook, error)
}

// TokenInfo is a token pair as the inventory shows it. ID is the
// HashSecret of its access token: it names the pair without being a
// credential, so it can be shown and sent back to revoke.
type TokenInfo struct {
	ID             string
	PortalID       int64
	AppID          int64
	UserID         int64
	Scopes         []string
	AccessExpires  time.Time
	RefreshExpires time.Time
	Revoked        bool
	CreatedAt      time.Time
}
