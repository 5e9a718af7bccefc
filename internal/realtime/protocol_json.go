package realtime

import (
	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/wire"
)

// jsonProtocol is version 3 with format=json: each message a JSON object,
// a batch their array. Like text, it ignores what the client sends.
type jsonProtocol struct{ plain }

var formatJSON = format{slot: 1, encode: wire.AppendJSONObject, contentType: "application/json", opcode: ws.OpText,
	open: []byte("["), sep: []byte(","), close: []byte("]")}

func (jsonProtocol) format() format { return formatJSON }
