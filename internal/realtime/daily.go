package realtime

import (
	"sync"
	"time"
)

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
