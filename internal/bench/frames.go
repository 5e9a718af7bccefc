package bench

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strconv"

	"github.com/pushpull/pushpull/internal/wire"
	"github.com/pushpull/pushpull/pkg/pullclient"
)

// midLen is the length of a message id: 26 digits.
const midLen = 26

// errUnterminated reports a frame start without its end.
var errUnterminated = errors.New("frame without its end marker")

// frame is what the bench needs of one text frame. It is filled without
// allocating: the frame's JSON is scanned for a few known keys rather than
// decoded, which is enough for the bodies the bench publishes itself. This
// is why the bench does not run pullclient's full client on its up to
// 15,000 connections: that client decodes every frame and body into a
// Message (several allocations per delivery) and hands it over through an
// event, where the bench must count deliveries at the rate the server
// sends them, on the same two cores. It shares the client's lower layer
// instead: the subscribe URL (pullclient.SubscribeURL), the protobuf walk
// (pullclient.EachOutgoing) and the wire package's frame markers.
type frame struct {
	mid    [midLen]byte
	hasMid bool
	// sent (unix ns) and seq come from the body {"t":…,"s":…,"p":"…"};
	// timed is false for any other body (the readiness probes, or messages
	// somebody else published on the channel).
	sent  int64
	seq   int64
	timed bool
}

// nextFrame parses the first frame of data into f and returns what follows
// it. ok is false when data holds no further frame.
func nextFrame(data []byte, f *frame) (rest []byte, ok bool, err error) {
	i := bytes.Index(data, []byte(wire.FrameStart))
	if i < 0 {
		return nil, false, nil
	}
	data = data[i+len(wire.FrameStart):]
	j := bytes.Index(data, []byte(wire.FrameEnd))
	if j < 0 {
		return nil, false, errUnterminated
	}
	parseFrame(data[:j], f)
	return data[j+len(wire.FrameEnd):], true, nil
}

// parseFrame fills f from the JSON object of one frame:
// {"id":…,"mid":"…","channel":"…","tag":"…","time":"…","text":BODY}.
func parseFrame(obj []byte, f *frame) {
	*f = frame{}
	// The text is the last member, so the keys before it are looked up in
	// the part before "text": the body cannot fool them.
	head, text, found := bytes.Cut(obj, []byte(`"text":`))
	if !found {
		head, text = obj, nil
	}
	if k := bytes.Index(head, []byte(`"mid":"`)); k >= 0 {
		v := head[k+len(`"mid":"`):]
		if len(v) > midLen && v[midLen] == '"' && allDigits(v[:midLen]) {
			copy(f.mid[:], v[:midLen])
			f.hasMid = true
		}
	}
	parseBody(text, f)
}

// parseBody fills f.sent, f.seq and f.timed from a body the bench
// published: {"t":SENT,"s":SEQ,…}.
func parseBody(text []byte, f *frame) {
	text = bytes.TrimLeft(text, " ")
	v, ok := bytes.CutPrefix(text, []byte(`{"t":`))
	if !ok {
		return
	}
	sent, v, ok := leadingInt(v)
	if !ok {
		return
	}
	v, ok = bytes.CutPrefix(v, []byte(`,"s":`))
	if !ok {
		return
	}
	seq, _, ok := leadingInt(v)
	if !ok {
		return
	}
	f.sent, f.seq, f.timed = sent, seq, true
}

// leadingInt parses the non-negative decimal number at the start of b.
func leadingInt(b []byte) (n int64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, b[i:], i > 0
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// appendBody appends the body the bench publishes: {"t":SENT,"s":SEQ,"p":"x…"}
// padded with x so that the whole body is size bytes (or as short as the
// two numbers allow).
func appendBody(dst []byte, sent, seq int64, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"t":`...)
	dst = strconv.AppendInt(dst, sent, 10)
	dst = append(dst, `,"s":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"p":"`...)
	pad := size - (len(dst) - start) - len(`"}`)
	for ; pad > 0; pad-- {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

// forEachOutgoing calls fn with the fields the bench needs of every
// OutgoingMessage in a ResponseBatch (binaryMode=true deliveries). The walk
// is the Go client's (pullclient.EachOutgoing), which reads the batch in
// place without allocating.
func forEachOutgoing(data []byte, f *frame, fn func(*frame)) error {
	return pullclient.EachOutgoing(data, func(v pullclient.OutgoingView) error {
		*f = frame{}
		if len(v.ID)*2 == midLen {
			hex.Encode(f.mid[:], v.ID)
			f.hasMid = allDigits(f.mid[:])
		}
		parseBody(v.Body, f)
		fn(f)
		return nil
	})
}
