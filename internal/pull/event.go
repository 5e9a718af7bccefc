package pull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/rest"
	"github.com/pushpull/pushpull/internal/store"
)

var (
	errUserIDAccess = rest.NewError(http.StatusBadRequest, "USER_ID_ACCESS_ERROR", "Only admin can send notifications to other channels")
	errModuleID     = rest.NewError(http.StatusBadRequest, "MODULE_ID_ERROR", "Module ID format error")
	errCommand      = rest.NewError(http.StatusBadRequest, "COMMAND_ERROR", "Command format error")
	errParams       = rest.NewError(http.StatusBadRequest, "PARAMS_ERROR", "Params format error")

	// The patterns of Bitrix's pull module. \w is ASCII, as in PHP without /u;
	// \z rather than $ so that a trailing newline is refused.
	moduleIDPattern = regexp.MustCompile(`^[a-z0-9._]*\z`)
	commandPattern  = regexp.MustCompile(`^[0-9A-Za-z_:|.\-]+\z`)
)

// eventAdd is pull.application.event.add: validation in Bitrix's order, then
// one message to the application's shared channel or to each named user's
// private application channel. The result is true, as in Bitrix, even when
// no recipient is left.
func (s *Service) eventAdd(ctx context.Context, c rest.Caller, p rest.Params) (any, error) {
	if c.ClientID == "" {
		return nil, wrongAuthType()
	}
	users, err := recipients(c, p.Get("USER_ID"))
	if err != nil {
		return nil, err
	}
	moduleID := "application"
	if v := p.Get("MODULE_ID"); v != nil {
		str, ok := v.(string)
		if !ok || !moduleIDPattern.MatchString(str) {
			return nil, errModuleID
		}
		moduleID = str
	}
	command, ok := p.Get("COMMAND").(string)
	if !ok || !commandPattern.MatchString(command) {
		return nil, errCommand
	}
	params, err := eventParams(p.Get("PARAMS"))
	if err != nil {
		return nil, err
	}

	now := s.opt.Now()
	m := &message.Message{Expiry: eventExpiry, Sender: message.Sender{Type: message.SenderBackend}}
	for _, uid := range users {
		if uid > 0 {
			u, err := s.st.User(ctx, c.PortalID, uid)
			if errors.Is(err, store.ErrNotFound) || (err == nil && !u.Active) {
				continue // inactive or unknown users receive nothing, as in Bitrix
			}
			if err != nil {
				return nil, fmt.Errorf("pull: user %d: %w", uid, err)
			}
		}
		ch, err := s.channel(ctx, c, uid, now)
		if err != nil {
			return nil, err
		}
		id, err := parseStoredID(ch.PrivateID)
		if err != nil {
			return nil, err
		}
		m.Receivers = append(m.Receivers, message.Receiver{ID: id})
	}
	if len(m.Receivers) == 0 {
		return true, nil
	}
	m.Body, err = json.Marshal(eventBody{ModuleID: moduleID, Command: command, Params: params, Extra: s.extra()})
	if err != nil {
		return nil, fmt.Errorf("pull: encode event: %w", err)
	}
	if err := s.pub.Publish(ctx, m); err != nil {
		if errors.Is(err, broker.ErrTooLarge) {
			// Bounded after encoding: escaping grows the params on the way.
			return nil, rest.NewError(http.StatusBadRequest, "PARAMS_ERROR", "Params are too large: "+strings.TrimPrefix(err.Error(), "publish: "))
		}
		return nil, fmt.Errorf("pull: publish event: %w", err)
	}
	s.published.Add(1)
	return true, nil
}

// recipients resolves USER_ID (docs/decisions.md, "REST"): none is the shared
// channel (user 0); an admin may name any users; anyone else only
// themselves. Ids compare as integers, so a form's "5", JSON's 5 and [5]
// all mean user 5 (Bitrix's string comparison rejects the latter two).
func recipients(c rest.Caller, v any) ([]int64, error) {
	if v == nil {
		return []int64{0}, nil
	}
	if str, ok := v.(string); ok && c.Admin {
		var decoded any
		if err := json.Unmarshal([]byte(str), &decoded); err == nil {
			v = decoded
		}
	}
	var ids []int64
	list, isList := v.([]any)
	if isList {
		for _, x := range list {
			if n, ok := rest.AsInt(x); ok && n > 0 && !slices.Contains(ids, n) {
				ids = append(ids, n)
			}
		}
	} else {
		n, _ := rest.AsInt(v)
		ids = []int64{max(n, 0)}
	}
	if c.Admin {
		return ids, nil
	}
	if len(ids) == 1 && ids[0] == c.UserID {
		return ids, nil
	}
	return nil, errUserIDAccess
}

// eventParams reads PARAMS: an object or list, or a JSON string of one;
// absent, null and "" are {}.
func eventParams(v any) (any, error) {
	switch p := v.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any, []any:
		return p, nil
	case string:
		if strings.TrimSpace(p) == "" {
			return map[string]any{}, nil
		}
		var decoded any
		if err := json.Unmarshal([]byte(p), &decoded); err != nil {
			return nil, errParams
		}
		switch d := decoded.(type) {
		case nil:
			return map[string]any{}, nil
		case map[string]any, []any:
			return d, nil
		}
	}
	return nil, errParams
}
