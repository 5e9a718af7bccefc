package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeOrderedJSON decodes a JSON body into an ordered tree, keeping object
// key order (batch runs cmd in that order) and numbers as json.Number. Only
// objects and arrays are accepted, as Bitrix ignores other JSON bodies.
// More than MaxJSONValues values give errJSONTooMany, found before the tree
// grows past that size; nesting deeper than MaxFormDepth gives errJSONDepth.
//
// Every unauthenticated JSON request is decoded (auth may be in the body),
// so this is a single pass over the bytes of our own rather than
// encoding/json's Token API, which boxes every token and runs a state
// machine per byte. It accepts exactly what encoding/json accepts, decodes
// strings as it does, and checks the limits at the same points of the input
// as the Token-based walk it replaced (kept as the oracle of
// FuzzOrderedJSONMatchesEncodingJSON), so a body gets the same answer.
func decodeOrderedJSON(data []byte) (*omap, error) {
	return decodeOrderedJSONMax(data, MaxJSONValues)
}

// decodeOrderedJSONMax is decodeOrderedJSON with a value limit of maxValues
// (at least 1), so that the tests reach the limit with small bodies.
func decodeOrderedJSONMax(data []byte, maxValues int) (*omap, error) {
	d := jsonDecoder{
		data:   data,
		budget: maxValues - 1,
		// Room for an ordinary call's body without growing.
		keys: make([]string, 0, 16),
		vals: make([]any, 0, 32),
	}
	d.skipSpace()
	if d.pos == len(d.data) {
		return nil, d.syntax("unexpected end of input")
	}
	if c := d.data[d.pos]; c != '{' && c != '[' {
		return nil, errors.New("decode json: body is not an object or array")
	}
	o, err := d.container(1)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, errors.New("decode json: trailing data")
	}
	return o, nil
}

// jsonDecoder holds the state of one decodeOrderedJSON call.
type jsonDecoder struct {
	data   []byte
	pos    int
	budget int // how many more values the body may hold

	// keys and vals are stacks shared by all open containers: a container's
	// members are collected here and its omap is built once, with its map
	// sized, when it closes. A body refused half-way builds nothing more.
	keys []string
	vals []any
	// index holds the decimal keys of list members, shared by every list.
	index []string
	// oneDigit holds the boxed json.Number of each one-digit number seen.
	oneDigit [10]any
	// slab hands out omaps a chunk at a time; slabSize grows to 64.
	slab     []omap
	slabSize int
}

func (d *jsonDecoder) syntax(msg string) error {
	return fmt.Errorf("decode json: %s at offset %d", msg, d.pos)
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// container decodes the object or array whose opening byte is at d.pos.
// The order of the checks is the Token walk's: the depth is checked once the
// opening byte is read; a member counts against the budget as soon as a byte
// other than a closing one follows the previous member, except that an
// object's key (and the comma before it) is read first.
func (d *jsonDecoder) container(depth int) (*omap, error) {
	open := d.data[d.pos]
	d.pos++
	if depth > MaxFormDepth {
		return nil, errJSONDepth
	}
	closing := byte(']')
	if open == '{' {
		closing = '}'
	}
	keyMark, valMark := len(d.keys), len(d.vals)
	for first := true; ; first = false {
		d.skipSpace()
		if d.pos == len(d.data) {
			return nil, d.syntax("unexpected end of input")
		}
		c := d.data[d.pos]
		if c == ']' || c == '}' {
			if c != closing {
				return nil, d.syntax("mismatched closing delimiter")
			}
			d.pos++
			break
		}
		if open == '{' {
			if !first {
				if c != ',' {
					return nil, d.syntax("expected comma after object member")
				}
				d.pos++
				d.skipSpace()
			}
			if d.pos == len(d.data) || d.data[d.pos] != '"' {
				return nil, d.syntax("expected object key")
			}
			key, err := d.str()
			if err != nil {
				return nil, err
			}
			d.keys = append(d.keys, key)
			if d.budget--; d.budget < 0 {
				return nil, errJSONTooMany
			}
			d.skipSpace()
			if d.pos == len(d.data) || d.data[d.pos] != ':' {
				return nil, d.syntax("expected colon after object key")
			}
			d.pos++
		} else {
			if d.budget--; d.budget < 0 {
				return nil, errJSONTooMany
			}
			if !first {
				if c != ',' {
					return nil, d.syntax("expected comma after array element")
				}
				d.pos++
			}
		}
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		d.vals = append(d.vals, v)
	}
	o := d.newOmap()
	vals := d.vals[valMark:]
	if open == '{' {
		o.obj = true
		keys := d.keys[keyMark:]
		if len(keys) > 0 {
			o.keys = make([]string, 0, len(keys))
			o.vals = make(map[string]any, len(keys))
			for i, k := range keys {
				o.set(k, vals[i])
			}
		}
		clear(keys)
		d.keys = d.keys[:keyMark]
	} else if n := len(vals); n > 0 {
		// What set would do for keys "0".."n-1", without parsing them back.
		o.keys = make([]string, n)
		o.vals = make(map[string]any, n)
		index := d.indexKeys(n)
		for i, v := range vals {
			o.keys[i] = index[i]
			o.vals[index[i]] = v
		}
		o.next = int64(n)
	}
	clear(vals)
	d.vals = d.vals[:valMark]
	return o, nil
}

// value decodes the value that starts after any space at d.pos.
func (d *jsonDecoder) value(depth int) (any, error) {
	d.skipSpace()
	if d.pos == len(d.data) {
		return nil, d.syntax("unexpected end of input")
	}
	switch c := d.data[d.pos]; c {
	case '{', '[':
		return d.container(depth + 1)
	case '"':
		return d.str()
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			n, err := d.number()
			if err != nil || len(n) != 1 {
				return n, err
			}
			// One boxed value per digit and body: [0,0,…] and {"k":0,…}
			// would otherwise cost an allocation per member.
			if d.oneDigit[c-'0'] == nil {
				d.oneDigit[c-'0'] = n
			}
			return d.oneDigit[c-'0'], nil
		}
		return nil, d.syntax(fmt.Sprintf("invalid character %q looking for beginning of value", c))
	}
}

func (d *jsonDecoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.syntax("invalid literal")
	}
	d.pos += len(lit)
	return nil
}

// number reads a number with the grammar of RFC 8259 and keeps its text,
// as encoding/json's UseNumber does. Like encoding/json it ends at the
// first byte that cannot continue it; what follows is the caller's to judge.
func (d *jsonDecoder) number() (json.Number, error) {
	start := d.pos
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case d.pos < len(d.data) && '1' <= d.data[d.pos] && d.data[d.pos] <= '9':
		d.skipDigits()
	default:
		return "", d.syntax("invalid number")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if !d.skipDigits() {
			return "", d.syntax("invalid number: no digit after the decimal point")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if !d.skipDigits() {
			return "", d.syntax("invalid number: no digit in the exponent")
		}
	}
	return json.Number(d.data[start:d.pos]), nil
}

// skipDigits skips decimal digits and reports whether there was one.
func (d *jsonDecoder) skipDigits() bool {
	start := d.pos
	for d.pos < len(d.data) && '0' <= d.data[d.pos] && d.data[d.pos] <= '9' {
		d.pos++
	}
	return d.pos > start
}

// str reads the string whose opening quote is at d.pos. Bytes are copied
// once, as they are, unless the string holds an escape or bytes that are
// not UTF-8; then it is decoded as encoding/json decodes strings.
func (d *jsonDecoder) str() (string, error) {
	d.pos++
	start := d.pos
	escaped, high := false, false
	for {
		if d.pos == len(d.data) {
			return "", d.syntax("unexpected end of input in string")
		}
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			d.pos++
			if !escaped && (!high || utf8.Valid(s)) {
				return string(s), nil
			}
			return unquoteJSON(s), nil
		case c == '\\':
			escaped = true
			d.pos++
			if d.pos == len(d.data) {
				return "", d.syntax("unexpected end of input in string escape")
			}
			switch d.data[d.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos++
			case 'u':
				d.pos++
				for range 4 {
					if d.pos == len(d.data) || !isHex(d.data[d.pos]) {
						return "", d.syntax(`invalid \u escape`)
					}
					d.pos++
				}
			default:
				return "", d.syntax("invalid escape in string")
			}
		case c < ' ':
			return "", d.syntax("control character in string")
		default:
			if c >= utf8.RuneSelf {
				high = true
			}
			d.pos++
		}
	}
}

// unquoteJSON decodes the body of a string already checked by str, as
// encoding/json does: a \u escape of a surrogate is paired with a following
// \u escape of the other half, or else is U+FFFD (and the next escape stands
// on its own); each byte that does not start a valid UTF-8 sequence becomes
// U+FFFD.
func unquoteJSON(s []byte) string {
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch s[r+1] {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := hex4(s[r+2:])
				r += 6
				if utf16.IsSurrogate(rr) {
					rr1 := rune(-1)
					if len(s)-r >= 6 && s[r] == '\\' && s[r+1] == 'u' {
						rr1 = hex4(s[r+2:])
					}
					if dec := utf16.DecodeRune(rr, rr1); dec != utf8.RuneError {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = utf8.RuneError
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, s[r+1])
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	return string(b)
}

// hex4 is the value of the four hex digits that start h (checked by str).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		r = r<<4 | rune(unhex(c))
	}
	return r
}

// indexKeys returns the keys "0".."n-1", made once per body for the
// longest list and shared by all (strings are immutable).
func (d *jsonDecoder) indexKeys(n int) []string {
	if n <= len(d.index) {
		return d.index[:n]
	}
	from := len(d.index)
	size := max(n, 2*from, 16)
	var digits []byte
	ends := make([]int, 0, size-from)
	for i := from; i < size; i++ {
		digits = strconv.AppendInt(digits, int64(i), 10)
		ends = append(ends, len(digits))
	}
	all := string(digits) // one allocation for the whole block
	prev := 0
	for _, end := range ends {
		d.index = append(d.index, all[prev:end])
		prev = end
	}
	return d.index[:n]
}

// newOmap hands out an empty omap from a chunk allocated for several.
func (d *jsonDecoder) newOmap() *omap {
	if len(d.slab) == 0 {
		d.slabSize = min(max(2*d.slabSize, 4), 64)
		d.slab = make([]omap, d.slabSize)
	}
	o := &d.slab[0]
	d.slab = d.slab[1:]
	return o
}
