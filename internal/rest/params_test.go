package rest

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func parse(s string) Params {
	o := newOmap()
	parsePHPForm(s, o)
	return o.params()
}

func TestParsePHPForm(t *testing.T) {
	cases := []struct {
		in   string
		want Params
	}{
		{"a=1&b=2", Params{"a": "1", "b": "2"}},
		{"a=1&a=2", Params{"a": "2"}},
		{"a[]=1&a[]=2", Params{"a": []any{"1", "2"}}},
		{"a[0]=1&a[1]=2", Params{"a": []any{"1", "2"}}},
		{"a[1]=1&a[0]=2", Params{"a": map[string]any{"1": "1", "0": "2"}}},
		{"a[5]=x&a[]=y", Params{"a": map[string]any{"5": "x", "6": "y"}}},
		{"a%5B0%5D=1&a%5Bk%5D%5Bz%5D=v", Params{"a": map[string]any{"0": "1", "k": map[string]any{"z": "v"}}}},
		{"PARAMS[a][b]=x+y%21", Params{"PARAMS": map[string]any{"a": map[string]any{"b": "x y!"}}}},
		{"a.b c=1", Params{"a_b_c": "1"}},
		{"a[b=1", Params{"a_b": "1"}},
		{"a[b]c=1", Params{"a": map[string]any{"b": "1"}}},
		{"a[b][c=1", Params{"a": map[string]any{"b": "1"}}},
		{"a=1&a[b]=2", Params{"a": map[string]any{"b": "2"}}},
		{"a[b]=2&a=1", Params{"a": "1"}},
		{"  a=1", Params{"a": "1"}},
		{"=1&&[x]=2", Params{}},
		{"a", Params{"a": ""}},
		{"a=%zz%4", Params{"a": "%zz%4"}},
		{"a[][]=1&a[][]=2", Params{"a": []any{[]any{"1"}, []any{"2"}}}},
		{"a[x.y]=1", Params{"a": map[string]any{"x.y": "1"}}},
	}
	for _, c := range cases {
		if got := parse(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("parse(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func TestParseLimits(t *testing.T) {
	deep := "a" + strings.Repeat("[x]", MaxFormDepth) + "=1"
	if got := parse(deep); !got.Has("a") {
		t.Errorf("depth %d should be kept", MaxFormDepth)
	}
	tooDeep := "a" + strings.Repeat("[x]", MaxFormDepth+1) + "=1&b=2"
	if got := parse(tooDeep); got.Has("a") || !got.Has("b") {
		t.Errorf("too deep: %v", got)
	}
	many := strings.Repeat("k[]=1&", MaxFormKeys+10)
	o := newOmap()
	if dropped := parsePHPForm(many, o); dropped != 10 {
		t.Errorf("dropped %d", dropped)
	}
	if l, _ := o.params().List("k"); len(l) != MaxFormKeys {
		t.Errorf("kept %d", len(l))
	}
	if _, err := decodeOrderedJSON([]byte(strings.Repeat("[", MaxFormDepth+1) + strings.Repeat("]", MaxFormDepth+1))); err == nil {
		t.Error("deep JSON accepted")
	}
	if _, err := decodeOrderedJSON([]byte(`"str"`)); err == nil {
		t.Error("scalar JSON accepted")
	}
}

func TestParamsHelpers(t *testing.T) {
	p := Params{"USER_ID": "5", "N": json.Number("7"), "F": 3.0, "L": map[string]any{"1": "b", "0": "a", "x": "c"}, "E": "", "Z": "0", "T": "false"}
	if n, ok := p.Int("user_id"); !ok || n != 5 {
		t.Error("Int string")
	}
	if n, ok := p.Int("n"); !ok || n != 7 {
		t.Error("Int number")
	}
	if n, ok := p.Int("F"); !ok || n != 3 {
		t.Error("Int float")
	}
	if s, ok := p.String("N"); !ok || s != "7" {
		t.Error("String number")
	}
	if l, _ := p.List("L"); !reflect.DeepEqual(l, []any{"a", "b", "c"}) {
		t.Errorf("List = %v", l)
	}
	for k, want := range map[string]bool{"E": false, "Z": false, "T": true, "USER_ID": true} {
		if got, _ := p.Bool(k); got != want {
			t.Errorf("Bool(%s) = %v", k, got)
		}
	}
	if _, ok := p.Bool("missing"); ok {
		t.Error("missing key found")
	}
}

// FuzzParsePHPForm checks that the parser never panics, respects the depth
// and key limits, produces only the documented value types, and that every
// value it stores is the decoded value of one of the input's pairs. The
// oracle decodes with net/url, which agrees with PHP's urldecode whenever it
// accepts the escapes (PHP keeps a malformed one literally, net/url refuses
// it: such values are only checked for length, as decoding never lengthens).
func FuzzParsePHPForm(f *testing.F) {
	for _, s := range []string{
		"a=1", "a[]=1&a[]=2", "PARAMS[a][b]=x", "a[b=1", "a%5B0%5D=1", "a[5]=1&a[]=2",
		"a=1&a[b]=2", "[]=1", "a[][][]=1", "%", "a[" + strings.Repeat("[", 100) + "]=1",
		"a" + strings.Repeat("[x]", 40) + "=1", "a[-1]=1&a[]=2", "a[9223372036854775807]=1&a[]=2",
		"a=%zz&b=x+y%21", "a=%e2%82%ac",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o := newOmap()
		parsePHPForm(s, o)
		if o.len() > MaxFormKeys {
			t.Fatalf("%d top-level keys", o.len())
		}
		decoded := map[string]bool{}
		pairs, longestRaw, undecodable := 0, 0, false
		for _, pair := range strings.Split(s, "&") {
			if pair == "" {
				continue
			}
			pairs++
			_, v, _ := strings.Cut(pair, "=")
			longestRaw = max(longestRaw, len(v))
			if d, err := url.QueryUnescape(v); err == nil {
				decoded[d] = true
			} else {
				undecodable = true
			}
		}
		leaves := 0
		var check func(v any, depth int)
		check = func(v any, depth int) {
			if depth > MaxFormDepth+1 {
				t.Fatalf("depth %d", depth)
			}
			switch x := v.(type) {
			case string:
				leaves++
				if len(x) > longestRaw {
					t.Fatalf("value %q is longer than every raw value of %q", x, s)
				}
				if !decoded[x] && !undecodable {
					t.Fatalf("value %q is not the decoded value of any pair of %q", x, s)
				}
			case []any:
				for _, e := range x {
					check(e, depth+1)
				}
			case map[string]any:
				for _, e := range x {
					check(e, depth+1)
				}
			default:
				t.Fatalf("unexpected type %T", v)
			}
		}
		for _, v := range o.params() {
			check(v, 1)
		}
		if leaves > min(pairs, MaxFormKeys) {
			t.Fatalf("%d values from %d pairs of %q", leaves, pairs, s)
		}
		if _, err := json.Marshal(o); err != nil {
			t.Fatalf("marshal: %v", err)
		}
	})
}
