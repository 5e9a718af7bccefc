package realtime

import (
	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/wire"
)

// textProtocol is protocol version 3, the NGINX push stream's: each
// message in its #!NGINXNMS!# frame, a batch their concatenation. The
// client sends nothing but control frames; data messages are ignored.
type textProtocol struct{ plain }

var formatText = format{slot: 0, encode: wire.AppendTextFrame, contentType: "text/plain", opcode: ws.OpText}

func (textProtocol) format() format { return formatText }
