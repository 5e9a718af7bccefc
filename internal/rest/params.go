package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Limits of the PHP-style parser. They protect the server from hostile
// inputs: a key like a[a][a]… or millions of tiny pairs would otherwise
// cost memory out of proportion to the body size.
const (
	// MaxFormDepth is the maximum bracket nesting of one key (a[1]…[32]) and
	// the maximum nesting of JSON bodies. PHP's max_input_nesting_level is 64;
	// no Bitrix client nests deeper than a handful of levels. A form variable
	// that nests deeper is dropped (as PHP does); a JSON body that nests deeper
	// is treated as invalid JSON and ignored, as CRestServer does.
	MaxFormDepth = 32
	// MaxFormKeys is the maximum number of name=value pairs taken from one
	// source (query string, one body, one batch sub-query), like PHP's
	// max_input_vars default. Further pairs are dropped silently, as PHP does.
	MaxFormKeys = 1000
	// MaxJSONValues is the maximum number of values (scalars, arrays and
	// objects, at any depth) in one JSON body. Decoded values cost far more
	// memory than their bytes ("{}" is 2 bytes of body and hundreds of bytes
	// of tree), so without a count a 1 MiB body could cost hundreds of MiB.
	// A body over the limit is refused (TooManyParameters), not truncated:
	// unlike form data, a cut JSON tree would change what a method sees.
	MaxJSONValues = 10000
)

// Params is the merged, PHP-style parameter tree of one call. Values are
// string (form data), []any (lists: PHP arrays with keys 0..n-1 in order),
// map[string]any (other arrays; integer keys become decimal strings) and,
// for JSON bodies, also json.Number, bool and nil (as in CRestServer: every
// form value is a string; JSON bodies keep JSON types).
//
// Top-level keys are case-insensitive for lookups (the pull handlers upper-
// case them, docs/protocol.md "REST API"); nested keys are case-sensitive.
type Params map[string]any

// Get returns the value of a top-level key: an exact match first, otherwise
// a case-insensitive one. The server already collapses keys that differ only
// by case (last one wins, like array_change_key_case), so at most one
// case-insensitive match exists for server-built Params.
func (p Params) Get(key string) any {
	v, _ := p.lookup(key)
	return v
}

// Has reports whether a top-level key is present (case-insensitively).
func (p Params) Has(key string) bool {
	_, ok := p.lookup(key)
	return ok
}

func (p Params) lookup(key string) (any, bool) {
	if v, ok := p[key]; ok {
		return v, true
	}
	// Deterministic choice for hand-built Params with case collisions.
	var best string
	found := false
	for k := range p {
		if strings.EqualFold(k, key) && (!found || k < best) {
			best, found = k, true
		}
	}
	if !found {
		return nil, false
	}
	return p[best], true
}

// String returns a scalar value as text: strings as they are, JSON numbers
// as their literal. Lists, maps, bools and null are not strings.
func (p Params) String(key string) (string, bool) {
	switch v := p.Get(key).(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	}
	return "", false
}

// Int returns a value as an integer: a decimal string (spaces trimmed), a
// JSON integer, or an integral float.
func (p Params) Int(key string) (int64, bool) {
	return AsInt(p.Get(key))
}

// Bool returns the PHP truthiness of a value and whether the key exists.
func (p Params) Bool(key string) (bool, bool) {
	v, ok := p.lookup(key)
	return Truthy(v), ok
}

// Map returns a map value. Lists are returned with keys "0".."n-1", since in
// PHP both are arrays.
func (p Params) Map(key string) (map[string]any, bool) {
	switch v := p.Get(key).(type) {
	case map[string]any:
		return v, true
	case []any:
		m := make(map[string]any, len(v))
		for i, x := range v {
			m[strconv.Itoa(i)] = x
		}
		return m, true
	}
	return nil, false
}

// List returns a list value. Maps are returned in the order of their
// integer keys (non-integer keys after them, sorted), since a[0]=…&a[1]=…
// and a[5]=… are PHP arrays a handler may treat as lists.
func (p Params) List(key string) ([]any, bool) {
	switch v := p.Get(key).(type) {
	case []any:
		return v, true
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			a, aok := phpIntKey(keys[i])
			b, bok := phpIntKey(keys[j])
			switch {
			case aok && bok:
				return a < b
			case aok != bok:
				return aok
			}
			return keys[i] < keys[j]
		})
		out := make([]any, len(keys))
		for i, k := range keys {
			out[i] = v[k]
		}
		return out, true
	}
	return nil, false
}

// AsInt converts a parameter value to an integer (see Params.Int).
func AsInt(v any) (int64, bool) {
	switch x := v.(type) {
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, true
		}
		f, err := x.Float64()
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, false
		}
		return int64(f), true
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return 0, false
		}
		return int64(x), true
	case int:
		return int64(x), true
	case int64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// Truthy is PHP's boolean conversion: "", "0", 0, false, null and empty
// arrays are false; everything else (including "false") is true. Bitrix's
// batch uses it for "halt".
func Truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != "" && x != "0"
	case json.Number:
		f, err := x.Float64()
		return err != nil || f != 0
	case float64:
		return x != 0
	case int:
		return x != 0
	case int64:
		return x != 0
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// omap is an ordered PHP array used while parsing. Go maps lose insertion
// order, but batch must run its commands in the order sent, and "last key
// wins" rules depend on order, so the tree is kept ordered until it is
// handed to a method as Params.
type omap struct {
	keys []string
	vals map[string]any // string, json.Number, bool, nil, *omap; may be nil when empty
	next int64          // next index for a[] appends, like PHP's nNextFreeElement
	obj  bool           // came from a JSON object: an empty one finalises to a map
	// phpJSON forces JSON output as a PHP array would be encoded: a list when
	// the keys are 0..n-1, "[]" when empty. Without it, output is an object.
	phpJSON bool
}

func newOmap() *omap { return &omap{vals: map[string]any{}} }

func (o *omap) len() int { return len(o.keys) }

func (o *omap) get(k string) (any, bool) {
	v, ok := o.vals[k]
	return v, ok
}

func (o *omap) set(k string, v any) {
	if o.vals == nil {
		// The JSON decoder leaves the map of an empty container unallocated.
		o.vals = map[string]any{}
	}
	n := len(o.vals)
	o.vals[k] = v
	if len(o.vals) > n {
		o.keys = append(o.keys, k)
	}
	if n, ok := phpIntKey(k); ok && n >= o.next && n < math.MaxInt64 {
		o.next = n + 1
	}
}

func (o *omap) del(k string) {
	if _, ok := o.vals[k]; !ok {
		return
	}
	delete(o.vals, k)
	o.keys = slices.DeleteFunc(o.keys, func(s string) bool { return s == k })
}

// replaceTop is PHP's array_replace: keys of src overwrite dst, new keys
// are appended in src order.
func (o *omap) replaceTop(src *omap) {
	for _, k := range src.keys {
		o.set(k, src.vals[k])
	}
}

// takeTop is replaceTop for a src that is not used afterwards: when o is
// still empty it takes src's keys and values as they are instead of copying
// them one by one (a JSON body may bring MaxJSONValues of them).
func (o *omap) takeTop(src *omap) {
	if o.len() != 0 || o.next != 0 {
		o.replaceTop(src)
		return
	}
	o.keys, o.vals, o.next = src.keys, src.vals, src.next
}

// foldCase removes keys that differ from a later key only by case, so that
// lookups that ignore case (docs/protocol.md, "REST API") see the last one
// sent, as PHP's array_change_key_case would. It rebuilds the key list in one
// pass: deleting the losers one by one would be quadratic in the key count.
func (o *omap) foldCase() {
	last := make(map[string]string, len(o.keys))
	for _, k := range o.keys {
		last[strings.ToLower(k)] = k
	}
	if len(last) == len(o.keys) {
		return
	}
	kept := o.keys[:0]
	for _, k := range o.keys {
		if last[strings.ToLower(k)] == k {
			kept = append(kept, k)
		} else {
			delete(o.vals, k)
		}
	}
	clear(o.keys[len(kept):])
	o.keys = kept
}

// isList reports whether keys are exactly "0".."n-1" in order.
func (o *omap) isList() bool {
	for i, k := range o.keys {
		if k != strconv.Itoa(i) {
			return false
		}
	}
	return true
}

// params finalises the top level into Params.
func (o *omap) params() Params {
	p := make(Params, len(o.keys))
	for _, k := range o.keys {
		p[k] = finalize(o.vals[k])
	}
	return p
}

func finalize(v any) any {
	o, ok := v.(*omap)
	if !ok {
		return v
	}
	if o.len() == 0 && o.obj {
		return map[string]any{}
	}
	if o.isList() {
		l := make([]any, len(o.keys))
		for i, k := range o.keys {
			l[i] = finalize(o.vals[k])
		}
		return l
	}
	m := make(map[string]any, len(o.keys))
	for _, k := range o.keys {
		m[k] = finalize(o.vals[k])
	}
	return m
}

// MarshalJSON writes keys in insertion order. With phpJSON it mimics PHP's
// json_encode of an array: a list for keys 0..n-1 and "[]" when empty.
func (o *omap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if o.phpJSON && o.isList() {
		b.WriteByte('[')
		for i, k := range o.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(&b, o.vals[k]); err != nil {
				return nil, err
			}
		}
		b.WriteByte(']')
		return b.Bytes(), nil
	}
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeJSON(&b, k); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		if err := writeJSON(&b, o.vals[k]); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeJSON(b *bytes.Buffer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	b.Write(data)
	return nil
}

// phpIntKey reports whether k is a key PHP would store as an integer:
// canonical decimal ("0", "-5", "12"; not "05", "+1", " 1") fitting int64.
func phpIntKey(k string) (int64, bool) {
	if k == "" || len(k) > 20 {
		return 0, false
	}
	s := k
	if s[0] == '-' {
		s = s[1:]
	}
	if s == "" || (s[0] == '0' && (len(s) > 1 || k[0] == '-')) {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(k, 10, 64)
	return n, err == nil
}

// parsePHPForm parses s with PHP parse_str semantics into dst and returns
// how many pairs were dropped by MaxFormKeys/MaxFormDepth.
func parsePHPForm(s string, dst *omap) (dropped int) {
	n := 0
	for len(s) > 0 {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if pair == "" {
			continue
		}
		if n >= MaxFormKeys {
			dropped++
			continue
		}
		n++
		k, v, _ := strings.Cut(pair, "=")
		if !registerVar(dst, phpURLDecode(k), phpURLDecode(v)) {
			dropped++
		}
	}
	return dropped
}

// phpURLDecode is PHP's urldecode: "+" is a space, %XX is a byte, and a
// malformed escape is kept literally (net/url would reject the whole value).
func phpURLDecode(s string) string {
	if !strings.ContainsAny(s, "+%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// registerVar stores one decoded name=value pair the way PHP's
// php_register_variable_ex does:
//   - leading spaces of the name are skipped; "." and " " in the top-level
//     name become "_";
//   - "name[a][b]" nests, "name[]" appends, text after a "]" that is not
//     followed by "[" is ignored;
//   - an unterminated "[" in the top-level name becomes "_" (a[b → a_b);
//     deeper, the unterminated part is ignored;
//   - a scalar in the way of a nested key is replaced by an array.
//
// It returns false when the variable is dropped (empty name, too deep).
func registerVar(dst *omap, name, value string) bool {
	name = strings.TrimLeft(name, " ")
	var top strings.Builder
	rest := ""
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '[' {
			if strings.IndexByte(name[i+1:], ']') < 0 {
				// Unterminated: PHP turns this "[" into "_" and keeps the
				// remainder of the name as is.
				top.WriteByte('_')
				top.WriteString(name[i+1:])
				rest = ""
			} else {
				rest = name[i:]
			}
			break
		}
		if c == ' ' || c == '.' {
			c = '_'
		}
		top.WriteByte(c)
	}
	if top.Len() == 0 {
		return false
	}
	// Collect the index segments.
	var idx []*string
	for len(rest) > 0 && rest[0] == '[' {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			break // unterminated at depth > 0: ignored
		}
		if len(idx) >= MaxFormDepth {
			return false
		}
		if end == 1 {
			idx = append(idx, nil)
		} else {
			s := rest[1:end]
			idx = append(idx, &s)
		}
		rest = rest[end+1:]
	}
	cur := dst
	key := top.String()
	for _, ix := range idx {
		child, ok := cur.get(key)
		co, isMap := child.(*omap)
		if !ok || !isMap {
			co = newOmap()
			cur.set(key, co)
		}
		cur = co
		if ix == nil {
			key = strconv.FormatInt(cur.next, 10)
		} else {
			key = *ix
		}
	}
	cur.set(key, value)
	return true
}

var (
	errJSONDepth   = errors.New("json nesting too deep")
	errJSONTooMany = errors.New("json body has too many values")
)
