package realtime

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/pushpull/pushpull/internal/channel"
)

// rawFrame encodes one client frame by hand, so that tests can send what no
// WebSocket library would: b0 is the first byte as sent (FIN, RSV, opcode).
func rawFrame(b0 byte, masked bool, payload []byte) []byte {
	out := []byte{b0, 0}
	switch n := len(payload); {
	case n < 126:
		out[1] = byte(n)
	case n <= 0xFFFF:
		out[1] = 126
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out[1] = 127
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !masked {
		return append(out, payload...)
	}
	out[1] |= 0x80
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, key[:]...)
	for i, b := range payload {
		out = append(out, b^key[i%4])
	}
	return out
}

const (
	fin        = 0x80
	opCont     = 0x0
	opText     = 0x1
	opBinary   = 0x2
	opClose    = 0x8
	opPing     = 0x9
	invalidUTF = "\xc3\x28"
)

func closeBody(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// rawConn is a WebSocket client on a bare TCP connection.
type rawConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialRawTCP does the opening handshake by hand.
func (ts *testServer) dialRawTCP(t *testing.T, query string) *rawConn {
	t.Helper()
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := "GET /sub/?" + query + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake answered %d", resp.StatusCode)
	}
	return &rawConn{conn: conn, r: r}
}

// nextFrame reads one server frame.
func (c *rawConn) nextFrame(t *testing.T) (ws.OpCode, []byte) {
	t.Helper()
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, p); err != nil {
		t.Fatalf("reading a frame's payload: %v", err)
	}
	return h.OpCode, p
}

// Every violation of RFC 6455 the server can see in a client's frames
// fails the connection with the code §7.4.1 gives it, and the first thing
// the client gets back is that close frame: nothing the bad frame carried
// (a ping's payload, a close code to echo, a message) is acted on.
func TestWebSocketProtocolViolationsAreFailed(t *testing.T) {
	ts := newTestServer(t, nil)
	big := bytes.Repeat([]byte("x"), 126)
	var cases = []struct {
		name string
		send [][]byte
		want ws.StatusCode
	}{
		{"ping over 125 bytes", [][]byte{rawFrame(fin|opPing, true, big)}, 1002},
		{"close over 125 bytes", [][]byte{rawFrame(fin|opClose, true, append(closeBody(1000, ""), big...))}, 1002},
		{"fragmented ping", [][]byte{rawFrame(opPing, true, []byte("p"))}, 1002},
		{"continuation without a message", [][]byte{rawFrame(fin|opCont, true, []byte("x"))}, 1002},
		{"text inside a fragmented text", [][]byte{rawFrame(opText, true, []byte("a")), rawFrame(fin|opText, true, []byte("b"))}, 1002},
		{"binary inside a fragmented binary", [][]byte{rawFrame(opBinary, true, []byte("a")), rawFrame(fin|opBinary, true, []byte("b"))}, 1002},
		{"opcode 3", [][]byte{rawFrame(fin|0x3, true, nil)}, 1002},
		{"opcode 7", [][]byte{rawFrame(fin|0x7, true, nil)}, 1002},
		{"opcode 0xB", [][]byte{rawFrame(fin|0xB, true, nil)}, 1002},
		{"opcode 0xF", [][]byte{rawFrame(fin|0xF, true, nil)}, 1002},
		{"RSV1", [][]byte{rawFrame(fin|0x40|opPing, true, nil)}, 1002},
		{"RSV2", [][]byte{rawFrame(fin|0x20|opText, true, []byte("x"))}, 1002},
		{"RSV3", [][]byte{rawFrame(fin|0x10|opBinary, true, []byte("x"))}, 1002},
		{"unmasked ping", [][]byte{rawFrame(fin|opPing, false, []byte("p"))}, 1002},
		{"unmasked close", [][]byte{rawFrame(fin|opClose, false, closeBody(1000, ""))}, 1002},
		{"invalid UTF-8 text", [][]byte{rawFrame(fin|opText, true, []byte("ok"+invalidUTF))}, 1007},
		{"invalid UTF-8 across fragments", [][]byte{
			rawFrame(opText, true, []byte("é"[:1])), rawFrame(fin|opCont, true, []byte("x"))}, 1007},
		{"truncated UTF-8 at the end", [][]byte{rawFrame(fin|opText, true, []byte("é"[:1]))}, 1007},
		{"invalid UTF-8 close reason", [][]byte{rawFrame(fin|opClose, true, closeBody(1000, invalidUTF))}, 1007},
		{"close with a 1-byte body", [][]byte{rawFrame(fin|opClose, true, []byte{3})}, 1002},
		{"close code 0", [][]byte{rawFrame(fin|opClose, true, closeBody(0, ""))}, 1002},
		{"close code 999", [][]byte{rawFrame(fin|opClose, true, closeBody(999, ""))}, 1002},
		{"close code 1004", [][]byte{rawFrame(fin|opClose, true, closeBody(1004, ""))}, 1002},
		{"close code 1005", [][]byte{rawFrame(fin|opClose, true, closeBody(1005, ""))}, 1002},
		{"close code 1006", [][]byte{rawFrame(fin|opClose, true, closeBody(1006, ""))}, 1002},
		{"close code 1015", [][]byte{rawFrame(fin|opClose, true, closeBody(1015, ""))}, 1002},
		{"close code 1016", [][]byte{rawFrame(fin|opClose, true, closeBody(1016, ""))}, 1002},
		{"close code 2999", [][]byte{rawFrame(fin|opClose, true, closeBody(2999, ""))}, 1002},
		{"close code 5000", [][]byte{rawFrame(fin|opClose, true, closeBody(5000, ""))}, 1002},
		{"close code 65535", [][]byte{rawFrame(fin|opClose, true, closeBody(65535, ""))}, 1002},
	}
	priv, pub := newChannel(t), newChannel(t)
	kinds := []struct{ name, query string }{
		{"text", ts.subQuery([]channel.ID{newChannel(t)}, "")},
		{"binary", "CHANNEL_ID=" + url.QueryEscape(ts.signer.SignPrivate(priv, pub)) + "&binaryMode=true&revision=19"},
		{"jsonrpc", ts.subQuery([]channel.ID{newChannel(t)}, "jsonRpc=true")},
	}
	for _, kind := range kinds {
		for _, tc := range cases {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				c := ts.dialRawTCP(t, kind.query)
				for _, f := range tc.send {
					if _, err := c.conn.Write(f); err != nil {
						t.Fatal(err)
					}
				}
				op, p := c.nextFrame(t)
				if op != ws.OpClose {
					t.Fatalf("got a %v frame %q, want the close frame", op, p)
				}
				if code, reason := ws.ParseCloseFrameData(p); code != tc.want {
					t.Fatalf("closed with %d %q, want %d", code, reason, tc.want)
				}
				// Then the socket: the peer's close (or its absence) is all
				// the server waits for.
				_, _ = c.conn.Write(rawFrame(fin|opClose, true, closeBody(1000, "")))
				var ne net.Error
				if _, err := io.Copy(io.Discard, c.r); errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the server did not close the socket: %v", err)
				}
			})
		}
	}
}

// What RFC 6455 allows is still accepted: valid close codes are echoed,
// UTF-8 split across fragments is put together, control frames may come
// between fragments, and an empty close is answered.
func TestWebSocketValidFramesAreAccepted(t *testing.T) {
	ts := newTestServer(t, nil)
	query := ts.subQuery([]channel.ID{newChannel(t)}, "jsonRpc=true")
	for _, code := range []uint16{1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999} {
		c := ts.dialRawTCP(t, query)
		if _, err := c.conn.Write(rawFrame(fin|opClose, true, closeBody(code, "bye é"))); err != nil {
			t.Fatal(err)
		}
		op, p := c.nextFrame(t)
		if got, reason := ws.ParseCloseFrameData(p); op != ws.OpClose || uint16(got) != code || reason != "bye é" {
			t.Fatalf("close %d: got %v %d %q, want it echoed", code, op, got, reason)
		}
	}
	// A text-mode subscriber ignores the message once it is checked.
	c := ts.dialRawTCP(t, ts.subQuery([]channel.ID{newChannel(t)}, ""))
	// "é" split between two fragments, a ping between them, then a ping
	// to prove the connection still reads: its pong comes after the
	// first one, with no close in between.
	for _, f := range [][]byte{
		rawFrame(opText, true, []byte("é"[:1])),
		rawFrame(fin|opPing, true, []byte("one")),
		rawFrame(fin|opCont, true, []byte("é"[1:])),
		rawFrame(fin|opPing, true, []byte("two")),
		rawFrame(fin|opClose, true, nil),
	} {
		if _, err := c.conn.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []struct {
		op ws.OpCode
		p  string
	}{{ws.OpPong, "one"}, {ws.OpPong, "two"}, {ws.OpClose, ""}} {
		if op, p := c.nextFrame(t); op != want.op || string(p) != want.p {
			t.Fatalf("got %v %q, want %v %q", op, p, want.op, want.p)
		}
	}
}

// refEvent is what refReadFrames saw: a control frame or a whole message.
type refEvent struct {
	op      byte
	payload string
}

// refReadFrames is a second reading of RFC 6455 §5, written from the text
// and sharing no code with frameReader or gobwas/ws: the events a server
// must act on in data, and the close code it must fail with (0 when the
// input is all valid frames, perhaps ending in a cut-off one).
func refReadFrames(data []byte, maxMessage int) (events []refEvent, code int) {
	var msg []byte
	msgOp := -1 // opcode of the open message; -1: none
	for {
		if len(data) < 2 {
			return events, 0
		}
		b0, b1 := data[0], data[1]
		hdr := 2
		length := uint64(b1 & 0x7f)
		switch length {
		case 126:
			hdr += 2
		case 127:
			hdr += 8
		}
		masked := b1&0x80 != 0
		if masked {
			hdr += 4
		}
		if len(data) < hdr {
			return events, 0
		}
		switch length {
		case 126:
			length = uint64(data[2])<<8 | uint64(data[3])
		case 127:
			length = 0
			for _, b := range data[2:10] {
				length = length<<8 | uint64(b)
			}
			if length>>63 != 0 {
				return events, 1002
			}
		}
		op := b0 & 0x0f
		control := op >= 8
		switch {
		case op >= 3 && op <= 7, op >= 0xB:
			return events, 1002 // reserved opcode
		case control && (length > 125 || b0&0x80 == 0):
			return events, 1002
		case b0&0x70 != 0:
			return events, 1002 // RSV without an extension
		case !masked:
			return events, 1002
		case op == 0 && msgOp < 0, (op == 1 || op == 2) && msgOp >= 0:
			return events, 1002
		case !control && uint64(len(msg))+length > uint64(maxMessage):
			return events, 1009
		}
		if uint64(len(data)-hdr) < length {
			return events, 0
		}
		key := data[hdr-4 : hdr]
		payload := make([]byte, length)
		for i := range payload {
			payload[i] = data[hdr+i] ^ key[i%4]
		}
		data = data[hdr+int(length):]
		if control {
			if op == 8 && len(payload) > 0 {
				if len(payload) == 1 {
					return events, 1002
				}
				c := int(payload[0])<<8 | int(payload[1])
				valid := (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
				if !valid {
					return events, 1002
				}
				if !utf8.Valid(payload[2:]) {
					return events, 1007
				}
			}
			events = append(events, refEvent{op, string(payload)})
			continue
		}
		if op != 0 {
			msgOp, msg = int(op), nil
		}
		msg = append(msg, payload...)
		if b0&0x80 == 0 {
			continue
		}
		if msgOp == 1 && !utf8.Valid(msg) {
			return events, 1007
		}
		events = append(events, refEvent{byte(msgOp), string(msg)})
		msgOp, msg = -1, nil
	}
}

// FuzzFrameReader feeds arbitrary bytes to the WebSocket frame reader, as
// a client could send them after the handshake. It must not panic, and it
// must agree with refReadFrames on every frame: accept exactly the valid
// ones, with the same payloads, and fail the connection with the same code
// (1002, 1007 or 1009) where the bytes stop being valid.
func FuzzFrameReader(f *testing.F) {
	seeds := [][]byte{
		rawFrame(fin|opText, true, []byte("hello")),
		append(rawFrame(opText, true, []byte("é"[:1])), rawFrame(fin|opCont, true, []byte("é"[1:]))...),
		append(append(rawFrame(opBinary, true, []byte{1, 2}), rawFrame(fin|opPing, true, []byte("p"))...), rawFrame(fin|opCont, true, []byte{3})...),
		rawFrame(fin|opClose, true, closeBody(1000, "bye")),
		rawFrame(fin|opClose, true, nil),
		rawFrame(fin|opPing, true, bytes.Repeat([]byte("x"), 126)),
		rawFrame(opPing, true, nil),
		rawFrame(fin|opCont, true, []byte("x")),
		rawFrame(fin|0x40|opText, true, []byte("x")),
		rawFrame(fin|0x3, true, nil),
		rawFrame(fin|opText, false, []byte("x")),
		rawFrame(fin|opText, true, []byte(invalidUTF)),
		rawFrame(fin|opClose, true, []byte{3}),
		rawFrame(fin|opClose, true, closeBody(1005, "")),
		rawFrame(fin|opClose, true, closeBody(4000, invalidUTF)),
		rawFrame(fin|opBinary, true, bytes.Repeat([]byte("y"), 300)),
		{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	const maxMessage = 200
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := frameReader{r: bytes.NewReader(data), maxPayload: maxMessage}
		wantEvents, wantCode := refReadFrames(data, maxMessage)
		var got []refEvent
		for {
			fc, err := fr.next()
			if err != nil {
				var bad *wsFailure
				code := 0
				if errors.As(err, &bad) {
					code = int(bad.code)
				} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error %v", err)
				}
				if code != wantCode {
					t.Fatalf("ended with code %d (%v), the RFC says %d", code, err, wantCode)
				}
				break
			}
			if fc.partial {
				continue
			}
			if fc.op == ws.OpText && !utf8.Valid(fc.payload) {
				t.Fatalf("accepted a text message that is not UTF-8: %q", fc.payload)
			}
			got = append(got, refEvent{byte(fc.op), string(fc.payload)})
		}
		if len(got) != len(wantEvents) {
			t.Fatalf("read %d frames, the RFC says %d: %q vs %q", len(got), len(wantEvents), got, wantEvents)
		}
		for i := range got {
			if got[i] != wantEvents[i] {
				t.Fatalf("frame %d: %v %q, the RFC says %v %q", i, got[i].op, got[i].payload, wantEvents[i].op, wantEvents[i].payload)
			}
		}
	})
}
