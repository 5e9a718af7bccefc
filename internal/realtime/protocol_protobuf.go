package realtime

import (
	"context"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
	"github.com/pushpull/pushpull/internal/wire"
)

// protobufProtocol is version 4 (binaryMode=true): deliveries in a protobuf
// ResponseBatch, and the client's binary messages are RequestBatches
// (client publishing, channel statistics), answered on the socket. A bad
// request closes the socket with its error code, as the reference does.
type protobufProtocol struct{ plain }

var formatBinary = format{slot: 2, encode: appendOutgoing, contentType: "application/octet-stream", opcode: ws.OpBinary,
	header: wire.AppendResponseBatchHeader}

func (protobufProtocol) format() format { return formatBinary }

// appendOutgoing is the protobuf OutgoingMessage; it names no channel, so
// every channel's delivery of a message encodes the same bytes.
func appendOutgoing(dst []byte, m *message.Message, _ channel.ID) []byte {
	return wire.AppendOutgoingMessage(dst, m)
}

func (protobufProtocol) receive(sess *session, op ws.OpCode, data []byte) ([]byte, error) {
	if op != ws.OpBinary {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), sess.srv.opt.WriteTimeout)
	defer cancel()
	who := sess.requester()
	who.source.conn = &sess.pubBudget
	return sess.srv.handleRequestBatch(ctx, data, who)
}
