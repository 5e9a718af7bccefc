package pull

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/rest"
)

func TestGetLastSeen(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 5)
	b, err := memory.New(memory.Options{HistoryPerChannel: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(ctx) })
	f.svc.opt.Presence = b
	tenant := f.svc.opt.Tenant
	if err := b.SetLastSeen(ctx, map[channel.ID]time.Time{channel.User(tenant, 5): f.now.Add(-90 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	// User 7 is online now; an old record does not matter then.
	if err := b.SetLastSeen(ctx, map[channel.ID]time.Time{channel.User(tenant, 7): f.now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Attach(ctx, []channel.ID{channel.Presence(tenant, 7)}); err != nil {
		t.Fatal(err)
	}
	// A user of another tenant is not this portal's user 8.
	if err := b.SetLastSeen(ctx, map[channel.ID]time.Time{channel.User("other", 8): f.now}); err != nil {
		t.Fatal(err)
	}
	for _, ids := range []any{[]any{"5", 7, 8}, map[string]any{"0": "5", "1": "7", "2": "8"}} {
		res, err := f.svc.lastSeen(ctx, f.caller, rest.Params{"userIds": ids, "sendToQueueSever": "true"})
		if err != nil {
			t.Fatal(err)
		}
		got := res.(map[string]int64)
		if len(got) != 2 || got["5"] != 90 || got["7"] != 0 {
			t.Fatalf("userIds %v: %v; want 5 seen 90 s ago, 7 online, 8 absent", ids, got)
		}
	}
	if res, err := f.svc.lastSeen(ctx, f.caller, rest.Params{}); err != nil || len(res.(map[string]int64)) != 0 {
		t.Fatalf("no users: %v, %v", res, err)
	}
	many := make([]any, maxLastSeenUsers+1)
	for i := range many {
		many[i] = i + 1
	}
	_, err = f.svc.lastSeen(ctx, f.caller, rest.Params{"userIds": many})
	var re *rest.Error
	if !errors.As(err, &re) || re.Code != rest.CodeInvalidRequest {
		t.Fatalf("too many users: %v", err)
	}
}
