package realtime

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/pushpull/pushpull/internal/channel"
)

// TestServerStatVersion4Shape: Push server 2.x's /server-stat/ carries
// limits, clusterMode and daily counters, which tools read; pushpull adds
// uptime and goroutines (issue 12 #6).
func TestServerStatVersion4Shape(t *testing.T) {
	ts := newTestServer(t, func(o *Options) { o.MaxConnPerChannel = 7; o.MaxPayload = 4096 })
	ch := newChannel(t)
	ts.dial(t, ts.subQuery([]channel.ID{ch}, ""))
	ts.waitWebSockets(t, 1)
	ts.publish(t, `{"n":1}`, ch)

	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/server-stat/", nil)
	code, body := do(t, req)
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); code != 200 || err != nil || len(raw) != 1 {
		t.Fatalf("server-stat: %d %q %v", code, body, err)
	}
	for _, key := range []string{"pid", "date", "processUniqueId", "channels", "limits", "clusterMode", "websockets", "pollings", "daily", "uptime", "goroutines"} {
		if _, ok := raw[0][key]; !ok {
			t.Errorf("server-stat lacks %q: %s", key, body)
		}
	}
	var st []ProcessStat
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	s := st[0]
	want := StatLimits{MaxPayload: 4096, MaxConnPerChannel: 7, MaxMessagesPerRequest: 100, MaxChannelsPerRequest: 100}
	if s.Limits != want {
		t.Errorf("limits %+v, want %+v", s.Limits, want)
	}
	if s.ClusterMode || s.Goroutines <= 0 {
		t.Errorf("clusterMode %v, goroutines %d", s.ClusterMode, s.Goroutines)
	}
	d := s.Daily
	if d.Date != time.Now().UTC().Format(time.DateOnly) && d.Date != time.Now().UTC().Add(-time.Minute).Format(time.DateOnly) {
		t.Errorf("daily date %q", d.Date)
	}
	if d.WebSockets != 1 || d.Publishes != 1 || d.Pollings != 0 || d.ClientPublishes != 0 {
		t.Errorf("daily %+v, want one WebSocket and one publish", d)
	}
}

func TestDailyCounterStartsOverEachDay(t *testing.T) {
	var d dailyCounter
	day1 := time.Date(2026, 12, 5, 23, 59, 0, 0, time.UTC)
	d.count(day1, dayPolling)
	d.count(day1, dayPolling)
	if got := d.get(day1); got.Pollings != 2 || got.Date != "2026-12-05" {
		t.Fatalf("day 1: %+v", got)
	}
	day2 := day1.Add(2 * time.Minute)
	d.count(day2, dayClientPublish)
	if got := d.get(day2); got != (DailyStat{Date: "2026-12-06", ClientPublishes: 1}) {
		t.Fatalf("day 2: %+v", got)
	}
	// A clock stepped back a day starts that day over, as a new day does.
	d.count(day1, dayPolling)
	if got := d.get(day1); got != (DailyStat{Date: "2026-12-05", Pollings: 1}) {
		t.Fatalf("clock stepped back: %+v", got)
	}
}
