package realtime

import (
	"net/url"
	"time"

	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

// format is how deliveries are written to one connection. Each has its slot
// in hub.Delivery's frame cache, so a message is encoded once per format and
// channel however many connections read it.
type format struct {
	slot        int
	encode      hub.Encoder
	contentType string
	// open, sep and close wrap a batch of frames into one WebSocket message or
	// long-poll body: nothing for NGINX frames (they concatenate), brackets
	// and commas for format=json.
	open, sep, close []byte
}

var (
	formatText = format{slot: 0, encode: wire.AppendTextFrame, contentType: "text/plain"}
	formatJSON = format{slot: 1, encode: wire.AppendJSONObject, contentType: "application/json",
		open: []byte("["), sep: []byte(","), close: []byte("]")}
)

// subscriberFormat picks the wire format from the subscribe query. Only the
// text forms exist so far; binaryMode and jsonRpc connections are served text
// until protocol versions 4 and 5 land, which is what a version-3 server does.
func subscriberFormat(q url.Values) format {
	if q.Get("format") == "json" {
		return formatJSON
	}
	return formatText
}

// maxBatchBytes caps one WebSocket message or long-poll body built from
// queued frames; a longer queue goes out in several messages.
const maxBatchBytes = 1 << 20

// batch appends to bufs the pieces of one message built from the head of
// ds, and returns how many deliveries it used (at least one).
func (f format) batch(bufs [][]byte, ds []*hub.Delivery) ([][]byte, int, int) {
	size := 0
	n := 0
	if f.open != nil {
		bufs = append(bufs, f.open)
		size += len(f.open)
	}
	for _, d := range ds {
		fr := d.Frame(f.slot, f.encode)
		if n > 0 && size+len(fr) > maxBatchBytes {
			break
		}
		if n > 0 && f.sep != nil {
			bufs = append(bufs, f.sep)
			size += len(f.sep)
		}
		bufs = append(bufs, fr)
		size += len(fr)
		n++
	}
	if f.close != nil {
		bufs = append(bufs, f.close)
		size += len(f.close)
	}
	return bufs, n, size
}

// serverRestartBody is the clients' server_restart system command (spec
// §4.5): they disconnect and come back after 15 s, which spreads the
// reconnect storm of a restart.
const serverRestartBody = `{"module_id":"pull","command":"server_restart","params":{}}`

func newServerRestart(id message.ID, now time.Time) *message.Message {
	return &message.Message{ID: id, Body: []byte(serverRestartBody), Created: now, Sender: message.Sender{Type: message.SenderBackend}}
}
