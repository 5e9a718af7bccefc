package pull

import (
	"context"
	"fmt"
	"net/http"

	"github.com/pushpull/pushpull/internal/rest"
	"github.com/pushpull/pushpull/internal/store"
)

// publicGet is pull.channel.public.get: the same answer as publicList for
// USERS or USER_ID, and for the caller when neither is given.
func (s *Service) publicGet(ctx context.Context, c rest.Caller, p rest.Params) (any, error) {
	if !p.Has("USERS") {
		users := any(c.UserID)
		if v := p.Get("USER_ID"); v != nil {
			users = v
		}
		p = rest.Params{"USERS": users, "APPLICATION": p.Get("APPLICATION")}
	}
	return s.publicList(ctx, c, p)
}

// maxPublicUsers bounds one pull.channel.public.list call (after duplicates
// are dropped): each user costs a registry read and maybe a channel write.
// It is what one form body can carry (rest.MaxFormKeys).
const maxPublicUsers = 1000

// userIDs reads a list of user ids, or a single one, from p[key]; ids that
// are not positive numbers are skipped, and so are repeats, as Bitrix keys
// its user lists by id.
func userIDs(p rest.Params, key string) []int64 {
	raw, ok := p.List(key)
	if !ok {
		if one, ok := rest.AsInt(p.Get(key)); ok {
			raw = []any{one}
		}
	}
	var ids []int64
	seen := make(map[int64]bool, len(raw))
	for _, v := range raw {
		if n, ok := rest.AsInt(v); ok && n > 0 && !seen[n] {
			seen[n] = true
			ids = append(ids, n)
		}
	}
	return ids
}

// publicList is pull.channel.public.list: the public ids of users' own
// channels, as clients need them to message those users (b24jssdk's
// ChannelManager reads user_id, public_id, signature, start and end).
// With APPLICATION=Y (exactly "Y", as Bitrix compares) they are the
// caller's application channels of those users instead, so that clients of
// one application can message each other by user id.
func (s *Service) publicList(ctx context.Context, c rest.Caller, p rest.Params) (any, error) {
	app := false
	if v, _ := p.String("APPLICATION"); v == "Y" {
		if c.ClientID == "" {
			return nil, rest.NewError(http.StatusBadRequest, "WRONG_AUTH_TYPE", "Get application public channel available only for application authorization.")
		}
		app = true
	}
	ids := userIDs(p, "USERS")
	if len(ids) > maxPublicUsers {
		return nil, rest.NewError(http.StatusBadRequest, rest.CodeInvalidRequest, fmt.Sprintf("USERS: at most %d users", maxPublicUsers))
	}
	out := map[string]any{}
	if len(ids) == 0 {
		return out, nil
	}
	var active []int64
	for _, id := range ids {
		if u, err := s.st.User(ctx, c.PortalID, id); err == nil && u.Active {
			active = append(active, id)
		}
	}
	chans, err := s.publicChannels(ctx, c, app, active)
	if err != nil {
		return nil, err
	}
	for uid, ch := range chans {
		out[fmt.Sprint(uid)] = map[string]any{
			"user_id": uid, "public_id": ch.PublicID, "signature": s.signer.SignHex("public:" + ch.PublicID),
			"start": ch.Start.Format(rest.PHPDateLayout), "end": ch.End.Format(rest.PHPDateLayout),
		}
	}
	return out, nil
}

// publicChannels returns the users' own channels, or with app the caller's
// application channels of those users, rotating expired ones.
func (s *Service) publicChannels(ctx context.Context, c rest.Caller, app bool, users []int64) (map[int64]store.Channel, error) {
	now := s.opt.Now()
	if app {
		// The application's channel of each user is keyed like the one
		// config.get hands that user, so both name the same channel.
		chans := make(map[int64]store.Channel, len(users))
		for _, id := range users {
			ch, err := s.channel(ctx, c, id, now)
			if err != nil {
				return nil, err
			}
			chans[id] = ch
		}
		return chans, nil
	}
	chans, replaced, err := s.st.PublicChannels(ctx, c.PortalID, 0, users, now, ChannelTTL)
	if err != nil {
		return nil, fmt.Errorf("pull: public channels: %w", err)
	}
	for _, old := range replaced {
		s.channelExpired(ctx, old, nil)
	}
	return chans, nil
}
