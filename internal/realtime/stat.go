package realtime

import (
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"time"
)

// ProcessStat is one process's entry in /server-stat/ and in the serverStats
// answer, in Push server 2.x's shape (one object per process of a cluster;
// tools read its limits), plus pushpull's own fields: uptime and goroutines.
type ProcessStat struct {
	PID             int        `json:"pid"`
	Date            int64      `json:"date"` // unix milliseconds
	ProcessUniqueID string     `json:"processUniqueId"`
	Channels        int        `json:"channels"`
	Limits          StatLimits `json:"limits"`
	ClusterMode     bool       `json:"clusterMode"`
	WebSockets      int64      `json:"websockets"`
	Pollings        int64      `json:"pollings"`
	Daily           DailyStat  `json:"daily"`
	Uptime          int64      `json:"uptime"` // seconds
	// Goroutines is runtime.NumGoroutine: a leak shows here first.
	Goroutines int `json:"goroutines"`
}

// StatLimits are the limits this process enforces, under 2.x's names.
type StatLimits struct {
	MaxPayload            int64 `json:"maxPayload"`
	MaxConnPerChannel     int   `json:"maxConnPerChannel"`
	MaxMessagesPerRequest int   `json:"maxMessagesPerRequest"`
	MaxChannelsPerRequest int   `json:"maxChannelsPerRequest"`
}

// Stat returns this process's counters.
func (s *Server) Stat() ProcessStat {
	now := time.Now()
	return ProcessStat{
		PID:             os.Getpid(),
		Date:            now.UnixMilli(),
		ProcessUniqueID: s.uid,
		Channels:        s.hub.Channels(),
		Limits: StatLimits{
			MaxPayload:            s.opt.MaxPayload,
			MaxConnPerChannel:     s.opt.MaxConnPerChannel,
			MaxMessagesPerRequest: maxMessagesPerRequest,
			MaxChannelsPerRequest: s.opt.MaxChannelsPerRequest,
		},
		ClusterMode: s.opt.ClusterMode,
		// Counters are paired increments and decrements; max guards a
		// reader that catches one half.
		WebSockets: max(s.websockets.Load(), 0),
		Pollings:   max(s.pollings.Load(), 0),
		Daily:      s.daily.get(now),
		Uptime:     int64(now.Sub(s.start) / time.Second),
		Goroutines: runtime.NumGoroutine(),
	}
}

func (s *Server) serveStat(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	body, err := json.Marshal([]ProcessStat{s.Stat()})
	if err != nil {
		writeText(w, http.StatusInternalServerError, "")
		return
	}
	writeText(w, http.StatusOK, string(body))
}
