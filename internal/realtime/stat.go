package realtime

import (
	"encoding/json"
	"net/http"
	"os"
	"time"
)

// ProcessStat is one process's entry in /server-stat/, in the reference
// servers' shape (one object per process of a cluster).
type ProcessStat struct {
	PID             int    `json:"pid"`
	Date            int64  `json:"date"` // unix milliseconds
	ProcessUniqueID string `json:"processUniqueId"`
	WebSockets      int64  `json:"websockets"`
	Pollings        int64  `json:"pollings"`
	Channels        int    `json:"channels"`
	Uptime          int64  `json:"uptime"` // seconds
}

// Stat returns this process's counters.
func (s *Server) Stat() ProcessStat {
	return ProcessStat{
		PID:             os.Getpid(),
		Date:            time.Now().UnixMilli(),
		ProcessUniqueID: s.uid,
		// Counters are paired increments and decrements; max guards a
		// reader that catches one half.
		WebSockets: max(s.websockets.Load(), 0),
		Pollings:   max(s.pollings.Load(), 0),
		Channels:   s.hub.Channels(),
		Uptime:     int64(time.Since(s.start) / time.Second),
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
