package realtime

import (
	"time"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/hub"
	"github.com/pushpull/pushpull/internal/message"
)

// format is how a protocol frames deliveries (protocol.go). Each has its slot
// in hub.Delivery's frame cache, so a message is encoded once per format and
// channel however many connections read it; a batch is then only the cached
// pieces and a few bytes of framing.
type format struct {
	slot        int
	encode      hub.Encoder
	contentType string
	opcode      ws.OpCode
	// open, sep and close wrap a batch: nothing for NGINX frames (they
	// concatenate), brackets and commas for format=json.
	open, sep, close []byte
	// header, when set, is the prefix of a batch whose elements take n
	// bytes: protobuf's nested length-delimited ResponseBatch headers.
	header func(dst []byte, n int) []byte
	// bare sends a batch of one without open and close: a JSON-RPC
	// notification on its own rather than a batch array of one.
	bare bool
}

// maxBatchBytes caps one WebSocket message or long-poll body built from
// queued frames; a longer queue goes out in several messages.
const maxBatchBytes = 1 << 20

// batch appends to pieces one message built from the head of ds, using
// hdr (capacity ≥ 16) for a length-dependent header, and returns how many
// deliveries it used (at least one) and the message size.
func (f format) batch(pieces [][]byte, ds []*hub.Delivery, hdr []byte) ([][]byte, int, int) {
	first := len(pieces)
	pieces = append(pieces, f.open)
	elems, n := 0, 0
	for _, d := range ds {
		fr := d.Frame(f.slot, f.encode)
		if n > 0 && elems+len(fr) > maxBatchBytes {
			break
		}
		if n > 0 && f.sep != nil {
			pieces = append(pieces, f.sep)
			elems += len(f.sep)
		}
		pieces = append(pieces, fr)
		elems += len(fr)
		n++
	}
	if f.bare && n == 1 {
		pieces[first] = nil
		return pieces, n, elems
	}
	if f.header != nil {
		pieces[first] = f.header(hdr[:0], elems)
	}
	if f.close != nil {
		pieces = append(pieces, f.close)
	}
	return pieces, n, elems + len(pieces[first]) + len(f.close)
}

// serverRestartBody is the clients' server_restart system command
// (docs/protocol.md, "System commands"): they disconnect and come back after
// 15 s, which spreads the reconnect storm of a restart.
const serverRestartBody = `{"module_id":"pull","command":"server_restart","params":{}}`

func newServerRestart(id message.ID, now time.Time) *message.Message {
	return &message.Message{ID: id, Body: []byte(serverRestartBody), Created: now, Sender: message.Sender{Type: message.SenderBackend}}
}
