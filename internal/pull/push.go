package pull

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/pushpull/pushpull/internal/push"
	"github.com/pushpull/pushpull/internal/rest"
)

var (
	errPushAccess = rest.NewError(http.StatusBadRequest, "ACCESS_ERROR", "You do not have access to send push notifications")
	errPushText   = rest.NewError(http.StatusBadRequest, "TEXT_ERROR", "Text can't be empty")
	errAppName    = rest.NewError(http.StatusBadRequest, "EMPTY_APP_NAME", "For send push-notification application name can't be empty")
)

// pushAdd is pull.application.push.add (docs/protocol.md, "REST API"): admins
// only, USER_ID as an admin's event.add, TEXT required. The result is true
// even when no recipient is left, as in Bitrix.
func (s *Service) pushAdd(ctx context.Context, c rest.Caller, p rest.Params) (any, error) {
	if c.ClientID == "" {
		return nil, rest.WrongAuthType("Send push notifications available only for application authorization.")
	}
	if !c.Admin {
		return nil, errPushAccess
	}
	admin := c
	admin.Admin = true
	users, err := recipients(admin, p.Get("USER_ID"))
	if err != nil {
		return nil, err
	}
	text, _ := p.String("TEXT")
	if !rest.Truthy(text) {
		return nil, errPushText
	}
	name, err := s.appName(ctx, c)
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errAppName
	}
	avatar, _ := p.String("AVATAR")
	n := push.Notification{ClientID: c.ClientID, SenderName: name, AvatarURL: avatar, Created: s.opt.Now(),
		Text: strings.TrimSpace(strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(text))}
	for _, uid := range users {
		if uid > 0 {
			n.UserIDs = append(n.UserIDs, uid)
		}
	}
	if len(n.UserIDs) == 0 || s.push == nil {
		return true, nil
	}
	if err := s.push.Send(ctx, n); err != nil {
		// Bitrix answers true whatever happens to the push afterwards.
		s.opt.Log.Warn("push notification not sent", "app", c.ClientID, "err", err)
	}
	return true, nil
}

// appName is the application's name; a webhook without an application is
// named after itself.
func (s *Service) appName(ctx context.Context, c rest.Caller) (string, error) {
	if c.AppID == 0 {
		return c.ClientID, nil
	}
	apps, err := s.st.Apps(ctx, c.PortalID)
	if err != nil {
		return "", fmt.Errorf("pull: apps: %w", err)
	}
	for _, a := range apps {
		if a.ID == c.AppID {
			return a.Name, nil
		}
	}
	return "", nil
}
