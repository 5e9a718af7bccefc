package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// oracleOrderedJSON is the decoder decodeOrderedJSON replaced, kept as it
// was: a walk over encoding/json's Token API. It is the reference the
// hand-written decoder must agree with.
//
// Its only change is the value limit, a parameter (was MaxJSONValues).
func oracleOrderedJSON(data []byte, maxValues int) (*omap, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("decode json: %w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok || (d != '{' && d != '[') {
		return nil, errors.New("decode json: body is not an object or array")
	}
	budget := maxValues - 1
	o, err := oracleContainer(dec, d, 1, &budget)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode json: trailing data")
	}
	return o, nil
}

// oracleContainer decodes the members of one array or object; budget is
// how many more values the body may hold.
func oracleContainer(dec *json.Decoder, open json.Delim, depth int, budget *int) (*omap, error) {
	if depth > MaxFormDepth {
		return nil, errJSONDepth
	}
	o := newOmap()
	o.obj = open == '{'
	for dec.More() {
		key := ""
		if open == '{' {
			tok, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("decode json: %w", err)
			}
			key, _ = tok.(string)
		}
		if *budget--; *budget < 0 {
			return nil, errJSONTooMany
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("decode json: %w", err)
		}
		var v any = tok
		if d, ok := tok.(json.Delim); ok {
			if v, err = oracleContainer(dec, d, depth+1, budget); err != nil {
				return nil, err
			}
		}
		if open == '{' {
			o.set(key, v)
		} else {
			o.set(strconv.FormatInt(o.next, 10), v)
		}
	}
	if _, err := dec.Token(); err != nil { // closing delimiter
		return nil, fmt.Errorf("decode json: %w", err)
	}
	return o, nil
}

// jsonErrKind names the answers a caller tells apart: readParams refuses
// errJSONTooMany, and ignores every other error.
func jsonErrKind(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errJSONTooMany):
		return "too many"
	case errors.Is(err, errJSONDepth):
		return "too deep"
	}
	return "invalid"
}

// sameTree reports whether two decoded trees are the same: keys in the same
// order, values of the same types and contents, the same next index and
// flags. A map left nil for an empty container equals an empty one.
func sameTree(a, b *omap) bool {
	if a.len() != b.len() || len(a.vals) != len(b.vals) || a.next != b.next || a.obj != b.obj || a.phpJSON != b.phpJSON {
		return false
	}
	for i, k := range a.keys {
		if b.keys[i] != k {
			return false
		}
		av, aok := a.vals[k]
		bv, bok := b.vals[k]
		if !aok || !bok {
			return false
		}
		ao, aIsMap := av.(*omap)
		bo, bIsMap := bv.(*omap)
		switch {
		case aIsMap != bIsMap:
			return false
		case aIsMap:
			if !sameTree(ao, bo) {
				return false
			}
		case !reflect.DeepEqual(av, bv):
			return false
		}
	}
	return true
}

// checkSameAsOracle decodes body with both decoders, with a limit of
// maxValues values, and fails unless they give the same tree, or errors of
// the same kind.
func checkSameAsOracle(t *testing.T, body []byte, maxValues int) {
	t.Helper()
	got, gotErr := decodeOrderedJSONMax(body, maxValues)
	want, wantErr := oracleOrderedJSON(body, maxValues)
	if g, w := jsonErrKind(gotErr), jsonErrKind(wantErr); g != w {
		t.Fatalf("%.200q (at most %d values): got %s (%v), encoding/json: %s (%v)", body, maxValues, g, gotErr, w, wantErr)
	}
	if gotErr == nil && !sameTree(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("%.200q: got %.300s, encoding/json: %.300s", body, g, w)
	}
}

// jsonSeeds are the bodies of the other tests and shapes built to find where
// the two decoders could part: every limit at and past its edge, each with
// bad input right after the point where it is checked, and every string
// escape and encoding case.
func jsonSeeds() []string {
	seeds := []string{
		`{"USERS":[1,2],"params":{"a":"b"},"Users":[3]}`,
		`{"auth":"good","cmd":{"a":"server.time"},"k0":0,"K0":1}`,
		"[" + strings.Repeat("{},", 20) + "{}]",
		`{"a":1}`, `[]`, `{}`, ` [ ] `, "\t{\n}\r\n", `[[],{},[[]],{"a":{}}]`,
		`{"a":1,"a":2,"b":3,"a":4}`, `{"5":"x","2":"y","-1":"z","05":"w","9223372036854775807":1}`,
		`[1,-0,0.5,-1.5e10,1E+2,1e-2,123456789012345678901234567890]`,
		`[true,false,null,"s"]`,
		`["\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac"]`,
		`["\ud83d\ude00","\ud83d","\ude00","\ud83d\u0041","\ud83dx","\ud83d\ud83d\ude00","\udbff\udfff"]`,
		"[\"\xff\xfe\",\"a\xc3\",\"\xed\xa0\x80\",\"\xf4\x90\x80\x80\",\"\xe2\x82\xac\"]",
		"{\"\xff\":\"\\u00e9\xff\"}",
		"[\"\x01\"]", "[\"\x7f\"]", `["\x"]`, `["\'"]`, `["\u12"]`, `["\u12g4"]`, `["abc`, `["\`,
		`[01]`, `[1.]`, `[1.e1]`, `[-]`, `[-a]`, `[1e]`, `[1e+]`, `[.5]`, `[+1]`, `[0x1]`, `[1 2]`,
		`[tru]`, `[truex]`, `[nul]`, `[nulll]`, `[falsey]`, `[True]`, `[NaN]`, `[Infinity]`,
		`[1,]`, `[,1]`, `[,]`, `{,}`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{"a":1 "b":2}`,
		`{1:2}`, `{"a"::1}`, `{[]:1}`, `[1}`, `{"a":1]`, `[`, `{`, `{"a"`, `{"a":`, `[1`, `[1,`,
		`[] x`, `[] []`, `{}}`, `[]]`, `"str"`, `1`, `null`, ``, ` `, "\ufeff[]", "[]\x00",
		strings.Repeat("[", MaxFormDepth) + strings.Repeat("]", MaxFormDepth),
		strings.Repeat("[", MaxFormDepth+1) + strings.Repeat("]", MaxFormDepth+1),
		strings.Repeat("[", MaxFormDepth+1),
		strings.Repeat("[", MaxFormDepth) + "x",
		strings.Repeat(`{"a":`, MaxFormDepth) + "1" + strings.Repeat("}", MaxFormDepth),
		strings.Repeat(`{"a":`, MaxFormDepth+1) + "1" + strings.Repeat("}", MaxFormDepth+1),
		strings.Repeat(`[{"a":`, MaxFormDepth/2) + "[]" + strings.Repeat("}]", MaxFormDepth/2),
	}
	// The value budget: the root and MaxJSONValues-1 members fit; one more
	// does not, whatever follows it.
	fits := strings.Repeat("0,", MaxJSONValues-2) + "0"
	for _, tail := range []string{"]", ",0]", ",]", ",", " x]", "x", ",[", ",{", "}", ",\"\x01\"]"} {
		seeds = append(seeds, "["+fits+tail)
	}
	objFits := strings.Repeat(`"k":0,`, MaxJSONValues-2) + `"k":0`
	for _, tail := range []string{"}", `,"k":0}`, `,"k"}`, `,"k":}`, ",}", ",", ` "k":0}`, `,1:0}`, `,"k`} {
		seeds = append(seeds, "{"+objFits+tail)
	}
	nested := strings.Repeat("[", 20) + strings.Repeat("0,", MaxJSONValues-21) + "0" + strings.Repeat("]", 20)
	seeds = append(seeds, nested, strings.Replace(nested, "0]", "0,0]", 1))
	for _, hb := range hostileBodies() {
		if hb.ctype == "application/json" {
			seeds = append(seeds, hb.body)
		}
	}
	return seeds
}

// TestOrderedJSONMatchesEncodingJSON runs the differential check on the
// seeds in every test run, with the real limit and with small ones; the
// fuzz target explores from them.
func TestOrderedJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range jsonSeeds() {
		for _, limit := range []int{MaxJSONValues, 1, 2, 3, 5, 8} {
			checkSameAsOracle(t, []byte(s), limit)
		}
	}
}

// TestOrderedJSONStrings checks the decoded text of strings against
// encoding/json directly, not only against the oracle.
func TestOrderedJSONStrings(t *testing.T) {
	for _, s := range []string{
		`"\ud83d\ude00 \ud83d \ude00 \ud83d\u0041 \u0000 \/"`,
		"\"\xff a\xc3 \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82\xac\"",
		`"plain"`, `""`, "\"caf\xc3\xa9\"",
	} {
		var want string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		o, err := decodeOrderedJSON([]byte("[" + s + "]"))
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got := o.vals["0"]; got != want {
			t.Errorf("%q: got %q, want %q", s, got, want)
		}
	}
}

// FuzzOrderedJSONMatchesEncodingJSON checks the hand-written decoder against
// the encoding/json walk it replaced, on arbitrary bytes: the same tree, or
// errors of the same kind (too many values, too deep, invalid). Each body is
// decoded with the real value limit and with a small one taken from the
// input, so that small bodies reach the limit's edge (large seeds would slow
// the fuzzing engine down; TestOrderedJSONMatchesEncodingJSON runs them).
func FuzzOrderedJSONMatchesEncodingJSON(f *testing.F) {
	for _, s := range jsonSeeds() {
		if len(s) <= 1024 {
			f.Add([]byte(s), uint8(3))
		}
	}
	f.Add([]byte(`[0,0,0,0,0,0,0]`), uint8(7))
	f.Add([]byte(`[0,0,0,0,0,0,0,]`), uint8(7))
	f.Add([]byte(`{"a":[0,0],"b":{"c":0},"d":0}`), uint8(6))
	f.Add([]byte(`{"a":[0,0],"b":{"c":0},"d" 0}`), uint8(6))
	f.Add([]byte(`[[],[[]],{},{"a":{}}]`), uint8(7))
	f.Fuzz(func(t *testing.T, body []byte, limit uint8) {
		checkSameAsOracle(t, body, MaxJSONValues)
		checkSameAsOracle(t, body, int(limit%32)+1)
	})
}

// BenchmarkOrderedJSON compares the decoder with the encoding/json walk it
// replaced (the oracle) on an ordinary call's body and on a batch.
func BenchmarkOrderedJSON(b *testing.B) {
	var batch strings.Builder
	batch.WriteString(`{"halt":0,"cmd":{`)
	for i := range 50 {
		if i > 0 {
			batch.WriteByte(',')
		}
		fmt.Fprintf(&batch, `"c%d":"pull.application.event.add?COMMAND=update&PARAMS[id]=%d&PARAMS[text]=caf%%C3%%A9"`, i, i)
	}
	batch.WriteString(`},"auth":"0123456789abcdef0123456789abcdef"}`)
	bodies := map[string]string{
		"call":  `{"auth":"0123456789abcdef0123456789abcdef","USERS":[1,2,3],"MODULE_ID":"im","COMMAND":"message","PARAMS":{"text":"Привет, \"world\"\n","dialogId":"chat42","n":12.5,"ok":true,"none":null}}`,
		"batch": batch.String(),
	}
	for name, body := range bodies {
		for _, dec := range []struct {
			name string
			fn   func([]byte) (*omap, error)
		}{
			{"ours", decodeOrderedJSON},
			{"encoding_json", func(d []byte) (*omap, error) { return oracleOrderedJSON(d, MaxJSONValues) }},
		} {
			b.Run(name+"/"+dec.name, func(b *testing.B) {
				b.ReportAllocs()
				data := []byte(body)
				for b.Loop() {
					if _, err := dec.fn(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
