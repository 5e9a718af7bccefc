package pull

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pushpull/pushpull/internal/broker/memory"
	"github.com/pushpull/pushpull/internal/rest"
)

// An event whose params fit the maximum payload but whose encoding does not
// (each < is six bytes once escaped) is refused with an error envelope and
// stores nothing (issue 11 #4).
func TestEventAddBoundedAfterEncoding(t *testing.T) {
	f := newFixture(t, 4)
	ctx := context.Background()
	b, err := memory.New(memory.Options{HistoryPerChannel: 10, MaxPayload: 1024}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(ctx) })
	f.svc.pub = b
	if _, err := f.svc.eventAdd(ctx, f.caller, rest.Params{"COMMAND": "small", "PARAMS": map[string]any{"a": strings.Repeat("<", 100)}}); err != nil {
		t.Fatalf("an event within the bound: %v", err)
	}
	_, err = f.svc.eventAdd(ctx, f.caller, rest.Params{"COMMAND": "big", "PARAMS": map[string]any{"a": strings.Repeat("<", 300)}})
	var re *rest.Error
	if !errors.As(err, &re) || re.Code != "PARAMS_ERROR" || !strings.Contains(re.Description, "maximum is 1024") {
		t.Fatalf("an event of 300 '<' under a 1 KiB bound: %v", err)
	}
	if s := b.Stats(); s.Messages != 1 {
		t.Fatalf("%d messages stored, want only the small one", s.Messages)
	}
}
