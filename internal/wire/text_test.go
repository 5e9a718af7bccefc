package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pushpull/pushpull/internal/channel"
	"github.com/pushpull/pushpull/internal/message"
)

var testChannel = channel.ID{0x46, 0xa4, 0x37, 0xd2, 0x33, 0x6d, 0x4a, 0x88, 0xe4, 0xe9, 0xb3, 0xcd, 0x95, 0x6e, 0xcf, 0x45}

func testMessage(body string) *message.Message {
	return &message.Message{
		ID:      message.ID{Epoch: 1452613435, Seq: 320146},
		Created: time.Date(2017, 6, 29, 9, 50, 16, 672e6, time.UTC),
		Body:    []byte(body),
	}
}

// The frame of spec/protocol.md Appendix B, example 2.
func TestTextFrameGolden(t *testing.T) {
	body := `{"module_id":"im","command":"x","params":{},"extra":{}}`
	got := string(AppendTextFrame(nil, testMessage(body), testChannel))
	want := `#!NGINXNMS!#{"id":320146,"mid":"14526134350000000000320146","channel":"46a437d2336d4a88e4e9b3cd956ecf45","tag":"672","time":"Thu, 29 Jun 2017 09:50:16 GMT","text":` + body + `}#!NGINXNME!#`
	if got != want {
		t.Fatalf("frame\n got %s\nwant %s", got, want)
	}
}

func TestTagIsZeroPadded(t *testing.T) {
	m := testMessage(`{}`)
	m.Created = time.Date(2017, 6, 29, 9, 50, 16, 7e6, time.FixedZone("X", 3600))
	fs, err := ParseTextFrames(AppendTextFrame(nil, m, testChannel))
	if err != nil || len(fs) != 1 {
		t.Fatal(err)
	}
	if fs[0].Tag != "007" || fs[0].Time != "Thu, 29 Jun 2017 08:50:16 GMT" {
		t.Fatalf("tag %q time %q", fs[0].Tag, fs[0].Time)
	}
	created, err := fs[0].Created()
	if err != nil || !created.Equal(m.Created) {
		t.Fatalf("Created() = %v, %v; want %v", created, err, m.Created)
	}
}

func TestBodiesAreMadeFrameSafe(t *testing.T) {
	for name, body := range map[string]string{
		"newlines":      "{\n  \"a\": 1,\r\n  \"b\": [1,\n2]\n}",
		"line sep":      "{\"s\":\"a\u2028b\u2029c\"}",
		"end marker":    `{"s":"x#!NGINXNME!#y","t":"#!NGINXNMS!#"}`,
		"all of them":   "{\"s\":\"#!NGINXNME!#\u2028\",\n\"n\":1}",
		"plain unicode": `{"s":"привет ✓"}`,
	} {
		t.Run(name, func(t *testing.T) {
			frame := AppendTextFrame(nil, testMessage(body), testChannel)
			inner := frame[len(FrameStart) : len(frame)-len(FrameEnd)]
			if !json.Valid(inner) {
				t.Fatalf("frame JSON is invalid: %s", inner)
			}
			if bytes.ContainsAny(inner, "\r\n") || bytes.Contains(inner, []byte("\u2028")) || bytes.Contains(inner, []byte(FrameEnd)) {
				t.Fatalf("frame still holds a terminator or marker: %q", inner)
			}
			fs, err := ParseTextFrames(frame)
			if err != nil || len(fs) != 1 {
				t.Fatalf("parse: %v %v", fs, err)
			}
			if !jsonEqual(t, fs[0].Text, []byte(body)) {
				t.Fatalf("text %s is not the body %s", fs[0].Text, body)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func TestParseSeveralFramesAndBadOnes(t *testing.T) {
	var buf []byte
	buf = AppendTextFrame(buf, testMessage(`{"n":1}`), testChannel)
	buf = append(buf, "garbage between"...)
	buf = append(buf, FrameStart+`{"broken"`+FrameEnd...)
	buf = AppendTextFrame(buf, testMessage(`{"n":2}`), testChannel)
	buf = append(buf, FrameStart+"{\"id\":1,\n\"mid\":\"1\",\"text\":{}}"+FrameEnd...)
	buf = append(buf, FrameStart+`{"id":1}`...)
	fs, err := ParseTextFrames(buf)
	if len(fs) != 2 || string(fs[0].Text) != `{"n":1}` || string(fs[1].Text) != `{"n":2}` {
		t.Fatalf("frames = %+v", fs)
	}
	if err == nil || strings.Count(err.Error(), "bad frame") != 3 {
		t.Fatalf("want three bad frames reported, got %v", err)
	}
}

func TestJSONArray(t *testing.T) {
	a := AppendJSONObject(nil, testMessage(`{"n":1}`), testChannel)
	b := AppendJSONObject(nil, testMessage("{\"n\":\n2}"), testChannel)
	arr := append(append(append(append([]byte("["), a...), ','), b...), ']')
	fs, err := ParseJSONArray(arr)
	if err != nil || len(fs) != 2 || fs[0].MID != "14526134350000000000320146" || fs[1].Channel != testChannel.String() {
		t.Fatalf("ParseJSONArray = %+v, %v", fs, err)
	}
	if _, err := ParseJSONArray([]byte(`{"not":"array"}`)); err == nil {
		t.Fatal("an object was accepted as an array")
	}
}

func FuzzTextFrameRoundTrip(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"\u2028"}`, "{\n}", `"#!NGINXNME!#"`, `[1,2,{"x":null}]`, `"\u2029#!NGINXNMS!#"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Publishers refuse bodies that are not valid UTF-8 JSON.
		if !json.Valid(body) || !utf8.Valid(body) {
			return
		}
		frame := AppendTextFrame(nil, testMessage(string(body)), testChannel)
		fs, err := ParseTextFrames(frame)
		if err != nil || len(fs) != 1 {
			t.Fatalf("body %q: frames %v, %v", body, fs, err)
		}
		if !jsonEqual(t, fs[0].Text, body) {
			t.Fatalf("body %q came back as %q", body, fs[0].Text)
		}
		if bytes.ContainsAny(fs[0].Text, "\r\n") || bytes.Contains(fs[0].Text, []byte("\u2028")) || bytes.Contains(fs[0].Text, []byte("\u2029")) {
			t.Fatalf("a line terminator survived in %q", fs[0].Text)
		}
	})
}

func FuzzParseTextFrames(f *testing.F) {
	f.Add(AppendTextFrame(nil, testMessage(`{"a":1}`), testChannel))
	f.Add([]byte(FrameStart + FrameEnd + FrameStart))
	f.Add([]byte(`[{"mid":"1","text":{}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, _ := ParseTextFrames(data)
		for _, fr := range fs {
			if fr.MID == "" || len(fr.Text) == 0 {
				t.Fatalf("decoded a frame without mid or text: %+v", fr)
			}
		}
		_, _ = ParseJSONArray(data)
	})
}

func BenchmarkAppendTextFrame(b *testing.B) {
	m := testMessage(`{"module_id":"application","command":"bench","params":{"p":"` + strings.Repeat("x", 40) + `"}}`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendTextFrame(buf[:0], m, testChannel)
	}
}

func BenchmarkAppendJSONObject(b *testing.B) {
	m := testMessage(`{"module_id":"application","command":"bench","params":{"p":"` + strings.Repeat("x", 40) + `"}}`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSONObject(buf[:0], m, testChannel)
	}
}
