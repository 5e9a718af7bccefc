package push

import (
	"context"
	"time"
)

// Notification is one mobile push accepted by pull.application.push.add,
// in the shape Bitrix queues it (module im, advanced_params).
type Notification struct {
	UserIDs    []int64
	Text       string
	ClientID   string
	SenderName string
	AvatarURL  string
	Created    time.Time
}

// Notifier accepts notifications for delivery. Queue is the one the server
// uses; the pull methods depend only on this, so they sit above push.
type Notifier interface {
	Send(ctx context.Context, n Notification) error
}
