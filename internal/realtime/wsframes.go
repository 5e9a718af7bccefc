package realtime

import (
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// frameReader reads a client's frames and enforces RFC 6455 on them: it
// holds the one piece of state the protocol carries between frames, the
// data message being assembled from fragments. It is separate from the
// connection so that the rules can be tested (and fuzzed) on bytes alone.
type frameReader struct {
	r          io.Reader
	maxPayload int64
	// op is the opcode of the message being assembled; msg its data so far.
	op  ws.OpCode
	msg []byte
	// open is true between a data frame without FIN and its last fragment.
	open bool
}

// clientFrame is what one read produced.
type clientFrame struct {
	// op is OpPing, OpPong, OpClose, or the opcode (OpText, OpBinary) of a
	// complete data message.
	op ws.OpCode
	// payload is the control frame's payload (unmasked) or the whole
	// message.
	payload []byte
	// partial marks a fragment of a message still open: nothing to act on.
	partial bool
}

// wsFailure is a violation of RFC 6455 by the peer: the connection is
// failed with code (§7.4.1) and nothing the offending frame carried is
// acted on.
type wsFailure struct {
	code   ws.StatusCode
	reason string
}

func (f *wsFailure) Error() string { return fmt.Sprintf("websocket %d: %s", f.code, f.reason) }

func protocolError(reason string) *wsFailure {
	return &wsFailure{ws.StatusProtocolError, reason}
}

// clientState is what ws.CheckHeader needs to know of this side: a server
// without extensions (none is ever negotiated), inside a message or not.
func (fr *frameReader) clientState() ws.State {
	s := ws.StateServerSide
	if fr.open {
		s = s.Set(ws.StateFragmented)
	}
	return s
}

// next reads one frame. An I/O error is returned as is; a protocol
// violation as a *wsFailure, with the frame's payload left unread (the
// connection is failed, so the stream is not read further as frames).
func (fr *frameReader) next() (clientFrame, error) {
	h, err := ws.ReadHeader(fr.r)
	if err != nil {
		if err == ws.ErrHeaderLengthMSB || err == ws.ErrHeaderLengthUnexpected {
			return clientFrame{}, protocolError("Bad frame length.")
		}
		return clientFrame{}, err
	}
	// Covers RSV bits (no extension is negotiated), reserved opcodes,
	// unmasked frames, control frames over 125 bytes or fragmented, a
	// continuation with no message open and a new message while one is.
	if err := ws.CheckHeader(h, fr.clientState()); err != nil {
		return clientFrame{}, protocolError(reasonFor(err))
	}
	if !h.OpCode.IsControl() && int64(len(fr.msg))+h.Length > fr.maxPayload {
		return clientFrame{}, &wsFailure{ws.StatusMessageTooBig, "Message too big."}
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		return clientFrame{}, err
	}
	ws.Cipher(payload, h.Mask, 0)
	if h.OpCode.IsControl() {
		if h.OpCode == ws.OpClose {
			if f := checkClosePayload(payload); f != nil {
				return clientFrame{}, f
			}
		}
		return clientFrame{op: h.OpCode, payload: payload}, nil
	}
	if h.OpCode != ws.OpContinuation {
		fr.op, fr.msg = h.OpCode, payload
	} else {
		fr.msg = append(fr.msg, payload...)
	}
	fr.open = !h.Fin
	if fr.open {
		return clientFrame{partial: true}, nil
	}
	msg, op := fr.msg, fr.op
	fr.msg, fr.op = nil, 0
	if op == ws.OpText && !utf8.Valid(msg) {
		return clientFrame{}, &wsFailure{ws.StatusInvalidFramePayloadData, "Invalid UTF-8 in a text message."}
	}
	return clientFrame{op: op, payload: msg}, nil
}

// reasonFor turns a header check's error into a close reason, which goes
// to the peer: short, and in this server's words.
func reasonFor(err error) string {
	switch err {
	case ws.ErrProtocolOpCodeReserved:
		return "Reserved opcode."
	case ws.ErrProtocolControlPayloadOverflow:
		return "Control frame over 125 bytes."
	case ws.ErrProtocolControlNotFinal:
		return "Fragmented control frame."
	case ws.ErrProtocolNonZeroRsv:
		return "RSV bits set without an extension."
	case ws.ErrProtocolMaskRequired:
		return "Client frame not masked."
	case ws.ErrProtocolContinuationExpected:
		return "New message inside a fragmented one."
	case ws.ErrProtocolContinuationUnexpected:
		return "Continuation without a message."
	}
	return "Protocol error."
}

// checkClosePayload validates a close frame's body (RFC 6455 §5.5.1,
// §7.4): empty, or a code a peer may send followed by UTF-8 text.
func checkClosePayload(p []byte) *wsFailure {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1:
		return protocolError("Close frame with a 1-byte body.")
	case !sendableCloseCode(binary.BigEndian.Uint16(p)):
		return protocolError("Invalid close code.")
	case !utf8.Valid(p[2:]):
		return &wsFailure{ws.StatusInvalidFramePayloadData, "Invalid UTF-8 in the close reason."}
	}
	return nil
}

// sendableCloseCode reports whether a peer may put code in a close frame:
// the codes RFC 6455 and the IANA registry define for the wire (1004, 1005,
// 1006 and 1015 must never be sent), and the ranges left to applications
// (3000-4999). The rest of 1000-2999 is reserved for future protocol use.
func sendableCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
