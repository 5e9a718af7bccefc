package pull

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/pushpull/pushpull/internal/broker"
	"github.com/pushpull/pushpull/internal/rest"
)

// maxLastSeenUsers bounds one pull.api.user.getLastSeen call.
const maxLastSeenUsers = 1000

// lastSeen is pull.api.user.getLastSeen, where the official clients turn for
// the users a version 5 push server did not know (b24jssdk's
// getUsersLastSeen): userIds -> {"<id>": seconds since last seen, 0 if online
// now}. Users pushpull has never seen online are left out, as the clients
// expect of users that never were ("missing from the result object").
func (s *Service) lastSeen(ctx context.Context, _ rest.Caller, p rest.Params) (any, error) {
	ids := userIDs(p, "userIds")
	if len(ids) > maxLastSeenUsers {
		return nil, rest.NewError(http.StatusBadRequest, rest.CodeInvalidRequest, fmt.Sprintf("userIds: at most %d users", maxLastSeenUsers))
	}
	out := map[string]int64{}
	if len(ids) == 0 || s.opt.Presence == nil {
		return out, nil
	}
	seen, err := broker.UsersLastSeen(ctx, s.opt.Presence, s.opt.Tenant, ids, s.opt.Now())
	if err != nil {
		return nil, fmt.Errorf("pull: last seen: %w", err)
	}
	for u, sec := range seen {
		out[strconv.FormatInt(u, 10)] = sec
	}
	return out, nil
}
