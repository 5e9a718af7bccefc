package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
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

// The frame of a version 3 text publish (docs/protocol.md, "Wire formats").
func TestTextFrameGolden(t *testing.T) {
	body := `{"module_id":"im","command":"x","params":{},"extra":{}}`
	object := `{"id":320146,"mid":"14526134350000000000320146","channel":"46a437d2336d4a88e4e9b3cd956ecf45","tag":"672","time":"Thu, 29 Jun 2017 09:50:16 GMT","text":` + body + `}`
	if got := string(AppendTextFrame(nil, testMessage(body), testChannel)); got != FrameStart+object+FrameEnd {
		t.Fatalf("frame\n got %s\nwant %s", got, FrameStart+object+FrameEnd)
	}
	if !json.Valid([]byte(object)) {
		t.Fatal("the golden object is not JSON")
	}
	if got := string(AppendJSONObject([]byte("prefix"), testMessage(body), testChannel)); got != "prefix"+object {
		t.Fatalf("object\n got %s\nwant %s", got, object)
	}
	if got := string(AppendJSONArray(nil, []Delivery{{testMessage(body), testChannel}, {testMessage(body), testChannel}})); got != "["+object+","+object+"]" {
		t.Fatalf("array\n got %s", got)
	}
	fs, err := ParseTextFrames([]byte(FrameStart + object + FrameEnd))
	if err != nil || len(fs) != 1 {
		t.Fatalf("parse: %v %v", fs, err)
	}
	if got, err := json.Marshal(fs[0]); err != nil || string(got) != object {
		t.Fatalf("the frame marshals as %s, %v", got, err)
	}
	if got := string(AppendJSONArray(nil, nil)); got != "[]" {
		t.Fatalf("empty array = %s", got)
	}
}

func TestTagAndTime(t *testing.T) {
	for _, tc := range []struct {
		created   time.Time
		tag, time string
	}{
		{time.Date(2017, 6, 29, 9, 50, 16, 7e6, time.FixedZone("X", 3600)), "007", "Thu, 29 Jun 2017 08:50:16 GMT"},
		{time.Date(2017, 6, 29, 9, 50, 16, 0, time.UTC), "000", "Thu, 29 Jun 2017 09:50:16 GMT"},
		{time.Date(2017, 6, 29, 9, 50, 16, 99e6+999_999, time.UTC), "099", "Thu, 29 Jun 2017 09:50:16 GMT"},
		{time.Date(1969, 12, 31, 23, 59, 59, 5e6, time.UTC), "005", "Wed, 31 Dec 1969 23:59:59 GMT"},
		{time.Date(2000, 2, 29, 0, 0, 0, 999e6, time.UTC), "999", "Tue, 29 Feb 2000 00:00:00 GMT"},
	} {
		m := testMessage(`{}`)
		m.Created = tc.created
		fs, err := ParseTextFrames(AppendTextFrame(nil, m, testChannel))
		if err != nil || len(fs) != 1 {
			t.Fatalf("%v: %v %v", tc.created, fs, err)
		}
		if fs[0].Tag != tc.tag || fs[0].Time != tc.time {
			t.Errorf("%v: tag %q time %q, want %q %q", tc.created, fs[0].Tag, fs[0].Time, tc.tag, tc.time)
		}
		created, err := fs[0].Created()
		if want := tc.created.Truncate(time.Millisecond); err != nil || !created.Equal(want) {
			t.Errorf("Created() = %v, %v; want %v", created, err, want)
		}
	}
}

// appendHTTPTime must agree with the standard formatter everywhere, including
// the years it hands back to it.
func TestHTTPTimeMatchesStandardFormat(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2017, 6, 29, 9, 50, 16, 0, time.FixedZone("Y", -7*3600)),
		time.Unix(0, 0),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(400*365*86400)-100*365*86400, r.Int64N(1e9)))
	}
	for _, tm := range times {
		got := string(appendHTTPTime(nil, tm))
		if want := tm.UTC().Format(http.TimeFormat); got != want {
			t.Fatalf("%v: %q, want %q", tm, got, want)
		}
	}
}

func TestCreatedIgnoresOddTags(t *testing.T) {
	base := time.Date(2017, 6, 29, 9, 50, 16, 0, time.UTC)
	for _, tag := range []string{"", "-01", "+01", "1", "0123", "x12"} {
		got, err := TextFrame{Tag: tag, Time: "Thu, 29 Jun 2017 09:50:16 GMT"}.Created()
		if err != nil || !got.Equal(base) {
			t.Errorf("tag %q: %v, %v", tag, got, err)
		}
	}
	if _, err := (TextFrame{Time: "yesterday"}).Created(); err == nil {
		t.Error("a bad time was accepted")
	}
}

// Bodies that need no rewriting are copied byte for byte, and without
// allocating when dst has room.
func TestPlainBodiesAreCopied(t *testing.T) {
	for _, body := range []string{`{}`, `{"s":"привет ✓ “quoted” — #!NGINXNMS!# #!NGINXNME #"}`, `[1,2.5e3,true,null,"\n\u2028"]`} {
		m := testMessage(body)
		obj := AppendJSONObject(nil, m, testChannel)
		if !bytes.HasSuffix(obj, []byte(`"text":`+body+`}`)) {
			t.Errorf("body %s was rewritten: %s", body, obj)
		}
		buf := make([]byte, 0, 1024)
		if n := testing.AllocsPerRun(100, func() { buf = AppendTextFrame(buf[:0], m, testChannel) }); n != 0 {
			t.Errorf("body %s: %v allocations per frame", body, n)
		}
	}
}

func TestBodyRewrites(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"{\n\t\"a\": 1,\r\n\"b\":2}\n", "{ \t\"a\": 1,  \"b\":2} "},
		{"{\"s\":\"a\u2028b\u2029\"}", `{"s":"a\u2028b\u2029"}`},
		{`{"s":"x#!NGINXNME!#y"}`, `{"s":"x#\u0021NGINXNME\u0021#y"}`},
		// Markers sharing their "#" must all be broken, not just every other one.
		{`"#!NGINXNME!#!NGINXNME!#!NGINXNME!#"`, `"#\u0021NGINXNME\u0021#\u0021NGINXNME\u0021#\u0021NGINXNME\u0021#"`},
		{`"##!NGINXNME!##"`, `"##\u0021NGINXNME\u0021##"`},
		{"\"\xff\xe2\x80\"", "\"\uFFFD\uFFFD\uFFFD\""},
		{"\"\xed\xa0\x80\"", "\"\uFFFD\uFFFD\uFFFD\""}, // a UTF-8 encoded surrogate
		{"\"\u2028\"\r", `"\u2028" `},
	} {
		if got := string(appendBody(nil, []byte(tc.body))); got != tc.want {
			t.Errorf("appendBody(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestBodiesAreMadeFrameSafe(t *testing.T) {
	for name, body := range map[string]string{
		"newlines":          "{\n  \"a\": 1,\r\n  \"b\": [1,\n2]\n}",
		"line separators":   "{\"s\":\"a\u2028b\u2029c\",\"\u2028\":[\"\u2029\u2029\"]}",
		"end marker":        `{"s":"x#!NGINXNME!#y","t":"#!NGINXNMS!#"}`,
		"shared hashes":     `{"s":"#!NGINXNME!#!NGINXNME!#","t":"#!NGINXNMS!#!NGINXNME!#"}`,
		"marker at the end": `"#!NGINXNME!#"`,
		"all of them":       "{\"s\":\"#!NGINXNME!#\u2028\",\n\"n\":1}\r\n",
		"invalid UTF-8":     "{\"s\":\"\xff\xfe\xe2\x80\xa8\xe2\x80\"}",
		"plain unicode":     `{"s":"привет ✓"}`,
	} {
		t.Run(name, func(t *testing.T) {
			checkRoundTrip(t, []byte(body))
		})
	}
}

// checkRoundTrip checks that body, which must be JSON, makes one frame that
// the clients' regex finds, that is valid UTF-8 JSON, and that gives back
// the same JSON value.
func checkRoundTrip(t *testing.T, body []byte) {
	t.Helper()
	frame := AppendTextFrame(nil, testMessage(string(body)), testChannel)
	inner := frame[len(FrameStart) : len(frame)-len(FrameEnd)]
	if !json.Valid(inner) || !utf8.Valid(inner) {
		t.Fatalf("body %q: the frame is not UTF-8 JSON: %q", body, inner)
	}
	if i := indexLineTerminator(frame, 0); i >= 0 {
		t.Fatalf("body %q: a line terminator at %d in %q", body, i, frame)
	}
	if bytes.Contains(inner, []byte(FrameEnd)) {
		t.Fatalf("body %q: an end marker inside %q", body, inner)
	}
	if m := clientRegex.FindAllSubmatch(frame, -1); len(m) != 1 || !bytes.Equal(m[0][1], inner) {
		t.Fatalf("body %q: the clients' regex finds %q in %q", body, m, frame)
	}
	fs, err := ParseTextFrames(frame)
	if err != nil || len(fs) != 1 {
		t.Fatalf("body %q: frames %+v, %v", body, fs, err)
	}
	if !jsonEqual(t, fs[0].Text, body) {
		t.Fatalf("body %q came back as %q", body, fs[0].Text)
	}
	if indexLineTerminator(fs[0].Text, 0) >= 0 {
		t.Fatalf("body %q: a line terminator survived in %q", body, fs[0].Text)
	}
	want := TextFrame{ID: 320146, MID: "14526134350000000000320146", Channel: testChannel.String(),
		Tag: "672", Time: "Thu, 29 Jun 2017 09:50:16 GMT", Text: fs[0].Text}
	if !reflect.DeepEqual(fs[0], want) {
		t.Fatalf("frame %+v, want %+v", fs[0], want)
	}
	arr := AppendJSONArray(nil, []Delivery{{testMessage(string(body)), testChannel}})
	if as, err := ParseJSONArray(arr); err != nil || len(as) != 1 || !reflect.DeepEqual(as[0], fs[0]) {
		t.Fatalf("body %q: format=json gives %+v, %v", body, as, err)
	}
}

// jsonEqual compares two JSON texts as values. Numbers are compared as
// text, as the frame never rewrites them and 1E700 does not fit a float64.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(data []byte) any {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

// clientRegex is the clients' /#!NGINXNMS!#(.*?)#!NGINXNME!#/g: JavaScript's
// "." is everything but the four line terminators, while RE2's also takes
// CR and U+2028/9. Go's leftmost-first lazy matching finds what
// JavaScript's backtracking does.
var clientRegex = regexp.MustCompile(`#!NGINXNMS!#([^\n\r\x{2028}\x{2029}]*?)#!NGINXNME!#`)

func TestParseSeveralFramesAndBadOnes(t *testing.T) {
	var buf []byte
	buf = AppendTextFrame(buf, testMessage(`{"n":1}`), testChannel)
	buf = append(buf, "garbage between"...)
	brokenAt := len(buf)
	buf = append(buf, FrameStart+`{"broken"`+FrameEnd...)
	buf = AppendTextFrame(buf, testMessage(`{"n":2}`), testChannel)
	buf = append(buf, FrameStart+"{\"mid\":\"1\",\n\"text\":{}}"+FrameEnd...)
	buf = AppendTextFrame(buf, testMessage(`{"n":3}`), testChannel)
	buf = append(buf, FrameStart+`{"mid":"1","text":{}}`...)
	fs, err := ParseTextFrames(buf)
	if len(fs) != 3 || string(fs[0].Text) != `{"n":1}` || string(fs[1].Text) != `{"n":2}` || string(fs[2].Text) != `{"n":3}` {
		t.Fatalf("frames = %+v", fs)
	}
	if !errors.Is(err, ErrBadFrame) || strings.Count(err.Error(), "bad frame") != 3 {
		t.Fatalf("want three bad frames reported, got %v", err)
	}
	for _, want := range []string{"no end marker", "line terminator", fmt.Sprintf("at byte %d: unexpected end", brokenAt)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if fs, err := ParseTextFrames(nil); fs != nil || err != nil {
		t.Fatalf("nothing parsed as %v, %v", fs, err)
	}
}

// Where a line terminator breaks a frame, the clients' regex goes on from
// the next start marker, even one inside the broken frame.
func TestParseResyncsLikeTheClients(t *testing.T) {
	good := string(AppendTextFrame(nil, testMessage(`{"n":1}`), testChannel))
	for _, data := range []string{
		FrameStart + "{\"a\":\n" + good,
		FrameStart + "\u2028" + FrameStart + good[len(FrameStart):],
		FrameStart + FrameEnd[1:] + "\n" + good, // the markers cannot share a "#"
		"#" + FrameStart[1:] + FrameStart[1:] + "\r" + good,
		good[:len(good)-1] + good, // the first borrows the end marker's "#" from the second's start
	} {
		fs, _ := ParseTextFrames([]byte(data))
		if len(fs) != 1 || string(fs[0].Text) != `{"n":1}` {
			t.Errorf("%q: frames %+v", data, fs)
		}
		if m := clientRegex.FindAllStringSubmatch(data, -1); len(m) != 1 {
			t.Errorf("%q: the regex finds %q", data, m)
		}
	}
}

// Scanning stays linear where a naive search per start marker would not,
// and the error stays small.
func TestParseManyBrokenFrames(t *testing.T) {
	data := []byte(strings.Repeat(FrameStart, 100_000) + "\n" + FrameEnd + strings.Repeat(FrameStart+FrameEnd, 100_000))
	fs, err := ParseTextFrames(data)
	if len(fs) != 0 || err == nil || len(err.Error()) > 4096 || !strings.Contains(err.Error(), "more") {
		t.Fatalf("frames %d, error %.200v", len(fs), err)
	}
}

func TestDecodeFrameLikeTheClients(t *testing.T) {
	for _, tc := range []struct {
		obj  string
		want *TextFrame // nil: an error
	}{
		{`{"mid":"1","text":{}}`, &TextFrame{MID: "1", Text: json.RawMessage(`{}`)}},
		{`{"mid":"1","text":null}`, &TextFrame{MID: "1", Text: json.RawMessage(`null`)}},
		{`{"mid":"1","mid":"2","text":1,"text":2}`, &TextFrame{MID: "2", Text: json.RawMessage(`2`)}},
		{`{"id":5,"mid":"1","channel":"-","tag":"007","time":"t","text":[ 1 ],"eventid":"x"}`,
			&TextFrame{ID: 5, MID: "1", Channel: "-", Tag: "007", Time: "t", Text: json.RawMessage(`[ 1 ]`)}},
		{` {"id":null,"mid":"1","tag":null,"text":"x"} `, &TextFrame{MID: "1", Text: json.RawMessage(`"x"`)}},
		{`{"MID":"1","text":{}}`, nil},
		{`{"mid":"1","Text":{}}`, nil},
		{`{"mid":"","text":{}}`, nil},
		{`{"mid":1,"text":{}}`, nil},
		{`{"id":-1,"mid":"1","text":{}}`, nil},
		{`{"id":1.5,"mid":"1","text":{}}`, nil},
		{`{"id":"1","mid":"1","text":{}}`, nil},
		{`{"tag":7,"mid":"1","text":{}}`, nil},
		{`{"mid":"1","text":{}`, nil},
		{`null`, nil},
		{`[{"mid":"1","text":{}}]`, nil},
		{"{\"mid\":\"\xff\",\"text\":{}}", nil},
	} {
		got, err := decodeFrame([]byte(tc.obj))
		switch {
		case tc.want == nil && err == nil:
			t.Errorf("%s: decoded as %+v", tc.obj, got)
		case tc.want != nil && (err != nil || !reflect.DeepEqual(got, *tc.want)):
			t.Errorf("%s: %+v, %v; want %+v", tc.obj, got, err, *tc.want)
		}
	}
}

func TestParseJSONArray(t *testing.T) {
	arr := AppendJSONArray(nil, []Delivery{{testMessage(`{"n":1}`), testChannel}, {testMessage("{\"n\":\n2}"), channel.ID{1}}})
	fs, err := ParseJSONArray(arr)
	if err != nil || len(fs) != 2 || fs[0].MID != "14526134350000000000320146" || fs[1].Channel != (channel.ID{1}).String() ||
		string(fs[0].Text) != `{"n":1}` || string(fs[1].Text) != `{"n": 2}` {
		t.Fatalf("ParseJSONArray = %+v, %v", fs, err)
	}
	if fs, err := ParseJSONArray([]byte(" [ ] ")); err != nil || len(fs) != 0 {
		t.Fatalf("empty array: %v, %v", fs, err)
	}
	fs, err = ParseJSONArray([]byte(`[{"mid":"1","text":1},{"mid":"2"},7,{"mid":"3","text":3}]`))
	if len(fs) != 2 || fs[1].MID != "3" || !errors.Is(err, ErrBadFrame) || !strings.Contains(err.Error(), "element 2") {
		t.Fatalf("bad elements: %+v, %v", fs, err)
	}
	for _, bad := range []string{``, `null`, `{"not":"array"}`, `[1,`, `"[]"`} {
		if fs, err := ParseJSONArray([]byte(bad)); err == nil || fs != nil {
			t.Errorf("%q was accepted as an array: %v", bad, fs)
		}
	}
}

func FuzzTextFrameRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":"\u2028"}`, "{\n}", `"#!NGINXNME!#"`, `[1,2,{"x":null}]`, `"\u2029#!NGINXNMS!#"`,
		"\"\u2028\u2029\"\r\n", `"#!NGINXNME!#!NGINXNME!#"`, "\"\xe2\x80\"", `null`, ` 1 `,
		"message", "", "a\n#!NGINXNME!#b\u2028", "caf\xe9", `{"open":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if at, _, _ := nextUnsafe(body); frameSafe(body) != (at < 0) {
			t.Fatalf("body %q: frameSafe says %v, nextUnsafe finds %d", body, frameSafe(body), at)
		}
		// Publishers accept bodies that are not JSON: they go as a JSON
		// string of their text, one frame, UTF-8 whatever the body.
		if !json.Valid(body) {
			frame := AppendTextFrame(nil, testMessage(string(body)), testChannel)
			fs, err := ParseTextFrames(frame)
			var text string
			if err != nil || len(fs) != 1 || !utf8.Valid(frame) || json.Unmarshal(fs[0].Text, &text) != nil {
				t.Fatalf("body %q: frame %q gives %+v, %v", body, frame, fs, err)
			}
			// Each byte that is not UTF-8 becomes U+FFFD.
			var want []rune
			for b := body; len(b) > 0; {
				r, n := utf8.DecodeRune(b)
				want, b = append(want, r), b[n:]
			}
			if text != string(want) {
				t.Fatalf("body %q arrives as %q", body, text)
			}
			return
		}
		// json.Valid lets invalid UTF-8 through, and so does this test.
		checkRoundTrip(t, body)
		if at, _, _ := nextUnsafe(body); at < 0 {
			if obj := AppendJSONObject(nil, testMessage(string(body)), testChannel); !bytes.HasSuffix(obj, append(append([]byte(`"text":`), body...), '}')) {
				t.Fatalf("body %q needs no rewriting but became %q", body, obj)
			}
		}
	})
}

func FuzzParseTextFrames(f *testing.F) {
	f.Add(AppendTextFrame(nil, testMessage(`{"a":1}`), testChannel))
	f.Add([]byte(FrameStart + FrameEnd + FrameStart))
	f.Add([]byte(FrameStart + "\n" + FrameStart + `{"mid":"1","text":1}` + FrameEnd))
	f.Add([]byte(`[{"mid":"1","text":{}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := ParseTextFrames(data)
		// The frames found are exactly the clients' regex matches that
		// JSON.parse and the clients' reads accept, worked out here without
		// the parser's own decoder.
		var want []map[string]any
		for _, m := range clientRegex.FindAllSubmatch(data, -1) {
			if fr, ok := oracleFrame(m[1]); ok {
				want = append(want, fr)
			}
		}
		if len(fs) != len(want) {
			t.Fatalf("%q: %d frames %+v, the oracle finds %d: %+v", data, len(fs), fs, len(want), want)
		}
		for i, f := range fs {
			w := want[i]
			var text any
			if err := unmarshalNumbers(f.Text, &text); err != nil || !reflect.DeepEqual(text, w["text"]) {
				t.Fatalf("%q: frame %d text %s, the oracle has %#v", data, i, f.Text, w["text"])
			}
			if f.MID != w["mid"] || f.Channel != str(w["channel"]) || f.Tag != str(w["tag"]) || f.Time != str(w["time"]) {
				t.Fatalf("%q: frame %d %+v, the oracle has %#v", data, i, f, w)
			}
			if id, _ := w["id"].(json.Number); f.ID != 0 || id != "" {
				if n, err := strconv.ParseUint(string(id), 10, 64); err != nil || n != f.ID {
					t.Fatalf("%q: frame %d id %d, the oracle has %q", data, i, f.ID, id)
				}
			}
		}
		if err != nil && !errors.Is(err, ErrBadFrame) {
			t.Fatalf("%q: error %v does not wrap ErrBadFrame", data, err)
		}
		for _, fr := range fs {
			if fr.MID == "" || fr.Text == nil {
				t.Fatalf("decoded a frame without mid or text: %+v", fr)
			}
		}
		if fs, err := ParseJSONArray(data); (err != nil && !errors.Is(err, ErrBadFrame)) || (err == nil && fs == nil) {
			t.Fatalf("%q: ParseJSONArray gives %+v, %v", data, fs, err)
		}
	})
}

// oracleFrame decodes the inside of one frame as a client does: the text
// must be UTF-8 (browsers decode it as such) and one JSON value, an object,
// whose last "mid" is a non-empty string and which has a "text"; "id", if
// present and not null, is a whole number (Push server 1.0's int of the
// mid), and "channel", "tag" and "time" are strings or null.
func oracleFrame(inner []byte) (map[string]any, bool) {
	var obj map[string]any
	if !utf8.Valid(inner) || unmarshalNumbers(inner, &obj) != nil || obj == nil {
		return nil, false
	}
	if mid, _ := obj["mid"].(string); mid == "" {
		return nil, false
	}
	if _, ok := obj["text"]; !ok {
		return nil, false
	}
	if id, ok := obj["id"]; ok && id != nil {
		n, isNum := id.(json.Number)
		if _, err := strconv.ParseUint(string(n), 10, 64); !isNum || err != nil {
			return nil, false
		}
	}
	for _, k := range []string{"channel", "tag", "time"} {
		if v, ok := obj[k]; ok && v != nil {
			if _, isStr := v.(string); !isStr {
				return nil, false
			}
		}
	}
	return obj, true
}

// unmarshalNumbers is json.Unmarshal keeping numbers as written, of one
// whole value.
func unmarshalNumbers(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("more than one value")
	}
	return nil
}

func str(v any) string { s, _ := v.(string); return s }

// benchBody is a typical compact body of 100 bytes.
const benchBody = `{"module_id":"application","command":"bench","params":{"p":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`

func BenchmarkAppendTextFrame(b *testing.B) {
	benchmarkAppend(b, AppendTextFrame, benchBody)
}

func BenchmarkAppendJSONObject(b *testing.B) {
	benchmarkAppend(b, AppendJSONObject, benchBody)
}

// A body that is not ASCII and needs its line separators escaped.
func BenchmarkAppendTextFrameRewritten(b *testing.B) {
	benchmarkAppend(b, AppendTextFrame, "{\"module_id\":\"im\",\"params\":{\"text\":\"Привет\u2028мир — “как дела?”\u2029\"}}\n")
}

func benchmarkAppend(b *testing.B, appendFn func([]byte, *message.Message, channel.ID) []byte, body string) {
	if body == benchBody && len(body) != 100 {
		b.Fatalf("the body is %d bytes", len(body))
	}
	m := testMessage(body)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		buf = appendFn(buf[:0], m, testChannel)
	}
}
