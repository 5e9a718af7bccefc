// Package wire encodes messages for subscribers and decodes what comes back:
// the NGINX text frames of protocol versions 1–3 (and 4 without binaryMode),
// JSON-RPC 2.0 (protocol version 5),
// the format=json arrays and protobuf. It is pure (no I/O, no goroutines) so
// that everything that judges untrusted bytes can be fuzzed on its own.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

// The frame markers. They are the protocol's own spelling (they come from
// nginx-push-stream-module) and the clients' parsers look for exactly these.
const (
	FrameStart = "#!NGINXNMS!#"
	FrameEnd   = "#!NGINXNME!#"
)

// AppendTextFrame appends one frame for the delivery of m through ch:
//
//	#!NGINXNMS!#{"id":…,"mid":"…","channel":"…","tag":"…","time":"…","text":<body>}#!NGINXNME!#
//
// Frames concatenate: a WebSocket message or long-poll body may hold several.
func AppendTextFrame(dst []byte, m *message.Message, ch channel.ID) []byte {
	dst = append(dst, FrameStart...)
	dst = AppendJSONObject(dst, m, ch)
	return append(dst, FrameEnd...)
}

// AppendJSONObject appends the frame object alone, the element of a
// format=json array. Keys come in the reference servers' order, so that a
// frame is byte for byte what Push server 1.0 sent. "id" is the counter part of
// the mid, because Push server 1.0 sent int(mid[10:]); "tag" and "time" are
// the creation time (the last three digits of its milliseconds, and its
// RFC 1123 form), which clients echo back on reconnect.
//
// A JSON body is spliced in as it is, because re-encoding every message
// would cost more than the rest of the frame; only what would break the
// clients' frame parsing is rewritten (see appendBody). A body that is not
// JSON, which publishers accept as Push server 2.x does, goes as a JSON
// string of its text.
func AppendJSONObject(dst []byte, m *message.Message, ch channel.ID) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, m.ID.Seq, 10)
	dst = append(dst, `,"mid":"`...)
	dst = m.ID.AppendText(dst)
	dst = append(dst, `","channel":"`...)
	dst = ch.AppendHex(dst)
	dst = append(dst, `","tag":"`...)
	ms := m.Created.UnixMilli() % 1000
	if ms < 0 { // before 1970: the digits still count up within the second
		ms += 1000
	}
	dst = append(dst, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	dst = append(dst, `","time":"`...)
	dst = appendHTTPTime(dst, m.Created)
	dst = append(dst, `","text":`...)
	if json.Valid(m.Body) {
		dst = appendBody(dst, m.Body)
	} else {
		// Spliced raw, it would break this frame, and in format=json every
		// frame of the array with it.
		dst = appendBody(dst, appendJSONString(nil, m.Body))
	}
	return append(dst, '}')
}

// appendJSONString appends b as a JSON string. Invalid UTF-8 becomes
// U+FFFD, and U+2028 and U+2029 are escaped, as encoding/json does.
func appendJSONString(dst, b []byte) []byte {
	s, _ := json.Marshal(string(b)) // a string always marshals
	return append(dst, s...)
}

// appendValidUTF8 appends b with each byte that is not part of valid UTF-8
// replaced by U+FFFD, as nextUnsafe does. Publishers refuse such bytes; this
// keeps a slip there, or a message stored before they did, from reaching a
// WebSocket text message, which browsers drop the connection for.
func appendValidUTF8(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return append(dst, b...)
	}
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, b[:size]...)
		}
		b = b[size:]
	}
	return dst
}

// Delivery is one message as one subscriber receives it: through the
// channel that matched, which the frame names.
type Delivery struct {
	Message *message.Message
	Channel channel.ID
}

// AppendJSONArray appends a whole format=json delivery, [obj,obj,…]. An
// empty ds gives [], which clients take as "nothing new".
func AppendJSONArray(dst []byte, ds []Delivery) []byte {
	dst = append(dst, '[')
	for i, d := range ds {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONObject(dst, d.Message, d.Channel)
	}
	return append(dst, ']')
}

// appendHTTPTime is time.AppendFormat(http.TimeFormat) for the years it can
// spell in four digits, written out by hand because the generic formatter
// was half the cost of a frame. It is the same text as JavaScript's
// Date.toUTCString, which the reference servers used.
func appendHTTPTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, http.TimeFormat)
	}
	const days = "SunMonTueWedThuFriSat"
	const months = "JanFebMarAprMayJunJulAugSepOctNovDec"
	hour, minute, sec := t.Clock()
	wd := int(t.Weekday())
	dst = append(dst, days[3*wd:3*wd+3]...)
	dst = append(dst, ',', ' ')
	dst = append2(dst, day)
	dst = append(dst, ' ')
	dst = append(dst, months[3*(month-1):3*month]...)
	dst = append(dst, ' ')
	dst = append2(dst, year/100)
	dst = append2(dst, year%100)
	dst = append(dst, ' ')
	dst = append2(dst, hour)
	dst = append(dst, ':')
	dst = append2(dst, minute)
	dst = append(dst, ':')
	dst = append2(dst, sec)
	return append(dst, " GMT"...)
}

// append2 appends 0 ≤ n < 100 as two digits.
func append2(dst []byte, n int) []byte {
	return append(dst, byte('0'+n/10), byte('0'+n%10))
}

// appendBody splices the JSON body in, made safe for the clients' frame
// regex /#!NGINXNMS!#(.*?)#!NGINXNME!#/g. The rewrites keep the meaning of
// valid JSON and are the same for format=json, so a message has one text.
func appendBody(dst, body []byte) []byte {
	if frameSafe(body) {
		return append(dst, body...)
	}
	for {
		i, n, repl := nextUnsafe(body)
		if i < 0 {
			return append(dst, body...)
		}
		dst = append(dst, body[:i]...)
		dst = append(dst, repl...)
		body = body[i+n:]
	}
}

// frameSafe reports whether nextUnsafe would find nothing in body. It is
// the fast path for the usual body, which needs no rewriting: vectorised
// searches for the bytes that start something to rewrite, and UTF-8
// validation that takes ASCII eight bytes at a time, are together several
// times faster on ASCII than nextUnsafe's byte-by-byte loop.
func frameSafe(body []byte) bool {
	if bytes.IndexByte(body, '\n') >= 0 || bytes.IndexByte(body, '\r') >= 0 || bytes.Contains(body, []byte(FrameEnd)) {
		return false
	}
	for b := body; ; {
		i := bytes.IndexByte(b, 0xE2) // the first byte of U+2028 and U+2029
		if i < 0 {
			break
		}
		if len(b)-i >= 3 && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9) {
			return false
		}
		b = b[i+1:]
	}
	return utf8.Valid(body)
}

// asciiUnsafe has bit c set for the ASCII bytes c that may start something
// nextUnsafe rewrites; all are below 64.
const asciiUnsafe = 1<<'\n' | 1<<'\r' | 1<<'#'

// nextUnsafe finds the first bytes of body that cannot go into a frame as
// they are, and returns where they start, how many there are and what
// replaces them; at is -1 when there are none. appendBody copies the runs
// between them in one piece.
//
//   - JavaScript's "." matches no line terminator, so one in a frame makes
//     the regex skip it and the message is silently lost. In valid JSON a raw
//     CR or LF can only be whitespace, so it becomes a space; U+2028 and
//     U+2029 can only be inside strings, so they become \u escapes.
//   - An end marker inside a string would end the frame early. Its "!"s
//     become \u0021, which is the same string. The final "#" is left to be
//     scanned again, as it can begin another marker ("#!NGINXNME!#!NGINXNME!#").
//   - Invalid UTF-8 becomes U+FFFD, byte by byte as encoding/json and
//     browsers decode it: a WebSocket text message must be UTF-8 and browsers
//     drop the connection on one that is not, which would cost every
//     subscriber of the message its connection. Publishers already refuse
//     such bodies; this keeps a slip there from reaching the clients.
//
// A start marker inside a body needs nothing: once the regex has matched a
// start marker, it looks only for the end one.
func nextUnsafe(body []byte) (at, n int, repl string) {
	for i := 0; i < len(body); {
		c := body[i]
		if c < utf8.RuneSelf {
			if c < 64 && asciiUnsafe&(uint64(1)<<c) != 0 {
				switch {
				case c == '\n' || c == '\r':
					return i, 1, " "
				case len(body)-i >= len(FrameEnd) && string(body[i:i+len(FrameEnd)]) == FrameEnd:
					return i, len(FrameEnd) - 1, `#\u0021NGINXNME\u0021`
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(body[i:])
		switch r {
		case utf8.RuneError:
			if size == 1 {
				return i, 1, "\uFFFD"
			}
		case '\u2028':
			return i, size, `\u2028`
		case '\u2029':
			return i, size, `\u2029`
		}
		i += size
	}
	return -1, 0, ""
}

// TextFrame is one decoded frame. It does not refer to the bytes it was
// decoded from, so callers may reuse their read buffers. encoding/json
// turns it back into the frame object, keys in the wire order.
type TextFrame struct {
	ID      uint64          `json:"id"`
	MID     string          `json:"mid"`
	Channel string          `json:"channel"` // "-" from Push server 2.x, which names no channel
	Tag     string          `json:"tag"`
	Time    string          `json:"time"`
	Text    json.RawMessage `json:"text"`
}

// Created is the frame's time plus the milliseconds of its tag, the
// creation time as far as the frame tells it.
func (f TextFrame) Created() (time.Time, error) {
	t, err := time.Parse(http.TimeFormat, f.Time)
	if err != nil {
		return t, fmt.Errorf("frame time %q: %w", f.Time, err)
	}
	if len(f.Tag) == 3 && isDigit(f.Tag[0]) && isDigit(f.Tag[1]) && isDigit(f.Tag[2]) {
		ms := int(f.Tag[0]-'0')*100 + int(f.Tag[1]-'0')*10 + int(f.Tag[2]-'0')
		t = t.Add(time.Duration(ms) * time.Millisecond)
	}
	return t, nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// ErrBadFrame is wrapped by every error about a frame that was skipped.
var ErrBadFrame = errors.New("bad frame")

// maxReported caps the frames a parse error describes one by one, so that a
// hostile body full of broken frames cannot make a huge error.
const maxReported = 16

// ParseTextFrames decodes the frames in data as the JavaScript clients find
// them with /#!NGINXNMS!#(.*?)#!NGINXNME!#/g: from each start marker to the
// nearest end marker, provided no line terminator (CR, LF, U+2028, U+2029)
// lies between; where one does, the search goes on from the next start
// marker, even one inside the broken frame. Text outside frames is ignored.
// Frames that the clients would skip, or that do not decode, are described
// in the error, wrapping ErrBadFrame, and the others are still returned.
//
// Unlike the regex, it takes time linear in len(data): the positions of the
// next end marker and line terminator are remembered across start markers.
func ParseTextFrames(data []byte) ([]TextFrame, error) {
	var (
		out  []TextFrame
		errs badFrames
		pos  int // where to look for the next start marker
		// Where the first end marker and line terminator were found after
		// an earlier start marker; -1: nowhere, -2: not looked for yet.
		// Start markers only move forward, so a position found stays the
		// answer until a start marker passes it.
		nextEnd, nextLT = -2, -2
	)
	for {
		i := bytes.Index(data[pos:], []byte(FrameStart))
		if i < 0 {
			break
		}
		start := pos + i
		inner := start + len(FrameStart)
		if nextEnd == -2 || 0 <= nextEnd && nextEnd < inner {
			nextEnd = indexFrom(data, inner, []byte(FrameEnd))
		}
		if nextEnd < 0 {
			errs.add(start, errors.New("no end marker"))
			break
		}
		if nextLT == -2 || 0 <= nextLT && nextLT < inner {
			nextLT = indexLineTerminator(data, inner)
		}
		if nextLT >= 0 && nextLT < nextEnd {
			errs.add(start, errors.New("line terminator inside the frame"))
			pos = start + 1
			continue
		}
		f, err := decodeFrame(data[inner:nextEnd])
		if err != nil {
			errs.add(start, err)
		} else {
			out = append(out, f)
		}
		pos = nextEnd + len(FrameEnd)
	}
	return out, errs.err()
}

// indexFrom is bytes.Index of sep in data[from:], as a position in data.
func indexFrom(data []byte, from int, sep []byte) int {
	if i := bytes.Index(data[from:], sep); i >= 0 {
		return from + i
	}
	return -1
}

// indexLineTerminator is the position in data of the first byte at or after
// from of a line terminator as JavaScript sees one, or -1.
func indexLineTerminator(data []byte, from int) int {
	for i := from; i < len(data); i++ {
		switch data[i] {
		case '\n', '\r':
			return i
		case 0xE2:
			if i+2 < len(data) && data[i+1] == 0x80 && (data[i+2] == 0xA8 || data[i+2] == 0xA9) {
				return i
			}
		}
	}
	return -1
}

// ParseJSONArray decodes a format=json delivery, [obj,obj,…]. Elements that
// do not decode are described in the error, wrapping ErrBadFrame, and the
// others are still returned.
func ParseJSONArray(data []byte) ([]TextFrame, error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '[' {
		return nil, fmt.Errorf("%w: not a JSON array", ErrBadFrame)
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("%w: not a JSON array: %w", ErrBadFrame, err)
	}
	out := make([]TextFrame, 0, len(raws))
	var errs badFrames
	for i, raw := range raws {
		f, err := decodeFrame(raw)
		if err != nil {
			errs.addElem(i, err)
			continue
		}
		out = append(out, f)
	}
	return out, errs.err()
}

// decodeFrame decodes one frame object as JSON.parse and the clients'
// property reads see it: keys are matched exactly (encoding/json alone would
// match "MID" too) and the last of repeated keys wins. The clients need
// "mid" for resuming and "text" for the message, so those must be there;
// the others may be missing but not of the wrong type, and other keys
// (nginx's "eventid") are ignored.
func decodeFrame(raw []byte) (TextFrame, error) {
	var f TextFrame
	if !utf8.Valid(raw) {
		return f, errors.New("not UTF-8")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return f, err
	}
	if obj == nil {
		return f, errors.New("not an object")
	}
	for _, field := range [...]struct {
		key string
		dst any
	}{{"id", &f.ID}, {"mid", &f.MID}, {"channel", &f.Channel}, {"tag", &f.Tag}, {"time", &f.Time}} {
		v, ok := obj[field.key]
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, field.dst); err != nil {
			return TextFrame{}, fmt.Errorf("%q: %w", field.key, err)
		}
	}
	f.Text = obj["text"]
	if f.MID == "" || f.Text == nil {
		return TextFrame{}, errors.New("no mid or text")
	}
	return f, nil
}

// badFrames collects the reasons frames were skipped.
type badFrames struct {
	errs []error
	more int
}

func (b *badFrames) add(offset int, err error) {
	b.push(func() error { return fmt.Errorf("%w at byte %d: %w", ErrBadFrame, offset, err) })
}

func (b *badFrames) addElem(index int, err error) {
	b.push(func() error { return fmt.Errorf("%w: element %d: %w", ErrBadFrame, index, err) })
}

func (b *badFrames) push(mk func() error) {
	if len(b.errs) < maxReported {
		b.errs = append(b.errs, mk())
	} else {
		b.more++
	}
}

func (b *badFrames) err() error {
	if b.more > 0 {
		b.errs = append(b.errs, fmt.Errorf("%w: %d more", ErrBadFrame, b.more))
	}
	return errors.Join(b.errs...)
}
