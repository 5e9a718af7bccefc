// Package wire encodes messages for subscribers and decodes what comes back:
// the NGINX text frames of protocol versions 1–3 (and 4 without binaryMode)
// and the format=json arrays. It is pure: no I/O, no goroutines.
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
func AppendTextFrame(dst []byte, m *message.Message, ch channel.ID) []byte {
	dst = append(dst, FrameStart...)
	dst = AppendJSONObject(dst, m, ch)
	return append(dst, FrameEnd...)
}

// AppendJSONObject appends the frame object alone, the element of a
// format=json array. Keys come in the reference servers' order. "id" is the
// counter part of the mid; "tag" and "time" are the creation time (the last
// three digits of its milliseconds, and its RFC 1123 form).
func AppendJSONObject(dst []byte, m *message.Message, ch channel.ID) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, m.ID.Seq, 10)
	dst = append(dst, `,"mid":"`...)
	dst = m.ID.AppendText(dst)
	dst = append(dst, `","channel":"`...)
	dst = ch.AppendHex(dst)
	dst = append(dst, `","tag":"`...)
	ms := m.Created.UnixMilli() % 1000
	if ms < 0 {
		ms += 1000
	}
	dst = append(dst, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	dst = append(dst, `","time":"`...)
	dst = m.Created.UTC().AppendFormat(dst, http.TimeFormat)
	dst = append(dst, `","text":`...)
	dst = appendBody(dst, m.Body)
	return append(dst, '}')
}

// appendBody splices the JSON body in, made safe for the clients' frame
// regex /#!NGINXNMS!#(.*?)#!NGINXNME!#/: JavaScript's "." matches no line
// terminator, so a raw CR or LF (legal in JSON only as whitespace) becomes a
// space and U+2028/U+2029 (legal only inside strings) become \u escapes; and
// an end marker inside a string would end the frame early, so its "!"s
// become \u0021. The meaning of valid JSON is unchanged. Bodies without any
// of these, nearly all, are copied as they are.
func appendBody(dst, body []byte) []byte {
	if !needsEscape(body) {
		return append(dst, body...)
	}
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == '\n' || c == '\r':
			dst = append(dst, ' ')
			i++
		case c == 0xE2 && i+2 < len(body) && body[i+1] == 0x80 && (body[i+2] == 0xA8 || body[i+2] == 0xA9):
			dst = append(dst, `\u202`...)
			dst = append(dst, "89"[body[i+2]-0xA8])
			i += 3
		case c == '#' && bytes.HasPrefix(body[i:], []byte(FrameEnd)):
			dst = append(dst, `#\u0021NGINXNME\u0021#`...)
			i += len(FrameEnd)
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst
}

func needsEscape(body []byte) bool {
	return bytes.IndexByte(body, '\n') >= 0 || bytes.IndexByte(body, '\r') >= 0 ||
		bytes.Contains(body, []byte("\u2028")) || bytes.Contains(body, []byte("\u2029")) ||
		bytes.Contains(body, []byte(FrameEnd))
}

// TextFrame is one decoded frame.
type TextFrame struct {
	ID      uint64          `json:"id"`
	MID     string          `json:"mid"`
	Channel string          `json:"channel"`
	Tag     string          `json:"tag"`
	Time    string          `json:"time"`
	Text    json.RawMessage `json:"text"`
}

// Created parses the frame's time with the millisecond digits of its tag.
func (f TextFrame) Created() (time.Time, error) {
	t, err := time.Parse(http.TimeFormat, f.Time)
	if err != nil {
		return t, fmt.Errorf("frame time %q: %w", f.Time, err)
	}
	if ms, err := strconv.Atoi(f.Tag); err == nil && len(f.Tag) == 3 {
		t = t.Add(time.Duration(ms) * time.Millisecond)
	}
	return t, nil
}

// ErrBadFrame reports frames that could not be decoded.
var ErrBadFrame = errors.New("bad frame")

// ParseTextFrames decodes every frame in data the way the JavaScript clients
// do: each start marker up to the nearest end marker. Text outside frames is
// ignored; a frame that does not decode is skipped and reported in the
// error, and the others are still returned.
func ParseTextFrames(data []byte) ([]TextFrame, error) {
	var out []TextFrame
	var errs []error
	for {
		i := bytes.Index(data, []byte(FrameStart))
		if i < 0 {
			break
		}
		data = data[i+len(FrameStart):]
		j := bytes.Index(data, []byte(FrameEnd))
		if j < 0 {
			errs = append(errs, fmt.Errorf("%w: no end marker", ErrBadFrame))
			break
		}
		raw := data[:j]
		data = data[j+len(FrameEnd):]
		if bytes.ContainsAny(raw, "\r\n") || bytes.Contains(raw, []byte("\u2028")) || bytes.Contains(raw, []byte("\u2029")) {
			// The clients' regex cannot match across a line terminator.
			errs = append(errs, fmt.Errorf("%w: line terminator inside a frame", ErrBadFrame))
			continue
		}
		f, err := decodeFrame(raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, f)
	}
	return out, errors.Join(errs...)
}

// ParseJSONArray decodes a format=json delivery.
func ParseJSONArray(data []byte) ([]TextFrame, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, fmt.Errorf("%w: not a JSON array: %w", ErrBadFrame, err)
	}
	out := make([]TextFrame, 0, len(raws))
	var errs []error
	for _, raw := range raws {
		f, err := decodeFrame(raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, f)
	}
	return out, errors.Join(errs...)
}

func decodeFrame(raw []byte) (TextFrame, error) {
	var f TextFrame
	if !utf8.Valid(raw) {
		return f, fmt.Errorf("%w: not UTF-8", ErrBadFrame)
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return f, fmt.Errorf("%w: %w", ErrBadFrame, err)
	}
	if f.MID == "" || len(f.Text) == 0 {
		return f, fmt.Errorf("%w: no mid or text", ErrBadFrame)
	}
	return f, nil
}
