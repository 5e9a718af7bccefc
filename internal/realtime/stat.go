package realtime

import (
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"sync"
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

// DailyStat counts what this process was asked since midnight UTC: requests
// by route, not messages, so that counting costs the routes nothing more
// than an increment.
type DailyStat struct {
	Date string `json:"date"` // YYYY-MM-DD, UTC
	// WebSockets and Pollings are connections opened and long polls taken.
	WebSockets int64 `json:"websockets"`
	Pollings   int64 `json:"pollings"`
	// Publishes are backend requests on /pub/ and /api/; ClientPublishes
	// are requests on /pubweb/.
	Publishes       int64 `json:"publishes"`
	ClientPublishes int64 `json:"clientPublishes"`
}

// dayKind is what a request counts as in DailyStat.
type dayKind int

const (
	dayWebSocket dayKind = iota
	dayPolling
	dayPublish
	dayClientPublish
)

// dailyCounter keeps DailyStat, starting over when the UTC day changes.
type dailyCounter struct {
	mu  sync.Mutex
	cur DailyStat
}

func (d *dailyCounter) count(now time.Time, k dayKind) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rollover(now)
	switch k {
	case dayWebSocket:
		d.cur.WebSockets++
	case dayPolling:
		d.cur.Pollings++
	case dayPublish:
		d.cur.Publishes++
	case dayClientPublish:
		d.cur.ClientPublishes++
	}
}

func (d *dailyCounter) get(now time.Time) DailyStat {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rollover(now)
	return d.cur
}

func (d *dailyCounter) rollover(now time.Time) {
	if day := now.UTC().Format(time.DateOnly); day != d.cur.Date {
		d.cur = DailyStat{Date: day}
	}
}

// countRequest records r, served by the route of kind k, in the daily counters.
func (s *Server) countRequest(r *http.Request, k dayKind) {
	if k == dayPolling && isUpgrade(r) {
		k = dayWebSocket
	}
	s.daily.count(time.Now(), k)
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
