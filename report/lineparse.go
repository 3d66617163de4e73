package report

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"unicode/utf8"

	"wormsink/evidence"
)

// Parser reads evidence lines. It is a hand-written JSON parser for the
// fields the report needs: it validates the whole line as JSON, takes fields
// in any order, decodes escapes, and costs no allocation for the lines the
// evidence writer produces. Anything unusual (invalid UTF-8, lone UTF-16
// surrogates, deep nesting) falls back to encoding/json, whose reading the
// fast path is fuzzed against. The zero value is ready to use; a Parser is
// not safe for concurrent use.
type Parser struct {
	f     fields
	arena []byte                                  // decoded strings with escapes; reserved per line so slices stay put
	next  [evidence.NumFields + 2][keyWays]keyLit // the keys that came after each key lately, latest first
	slow  map[string]any
	// quotes has a bit per byte of the line scanPlain reads, set for its quotes.
	quotes [plainMax / 64]uint64
}

// maxDepth bounds the fast path's recursion into nested values; deeper
// lines go to encoding/json.
const maxDepth = 32

// Parse reads one line (without its newline) into rec. For a LineMalformed
// line the error, wrapping ErrMalformed, says why.
func (p *Parser) Parse(line []byte, rec *Sighting) (LineKind, error) {
	p.f.reset()
	if p.scanPlain(line) {
		return toSighting(&p.f, rec)
	}
	p.f.reset()
	kind, err, fallback := p.scan(line)
	if fallback {
		return p.parseSlow(line, rec)
	}
	if kind != LineEvidence {
		return kind, err
	}
	return toSighting(&p.f, rec)
}

// scan tokenizes line into p.f. kind is LineEvidence when the line was a
// valid JSON object (finish decides the rest), LineBlank or LineMalformed.
func (p *Parser) scan(line []byte) (kind LineKind, err error, fallback bool) {
	i := skipWS(line, 0)
	if i == len(line) {
		return LineBlank, nil, false
	}
	if line[i] != '{' {
		// Valid JSON that is no object, or no JSON at all: malformed either way.
		return LineMalformed, errNotObject, false
	}
	if cap(p.arena) < len(line) {
		p.arena = make([]byte, 0, len(line)+len(line)/2)
	}
	p.arena = p.arena[:0]
	i = skipWS(line, i+1)
	if i < len(line) && line[i] == '}' {
		i++
	} else {
		prev := keyStart
		for {
			if i >= len(line) || line[i] != '"' {
				return LineMalformed, errBadJSON, false
			}
			var fi evidence.Field
			// The keys that followed this one lately, each compared in two
			// words: a log's lines mostly repeat their keys in a few orders
			// (optional keys present or not, several sensors' writers).
			hit := false
			if i+16 <= len(line) {
				w0, w1 := binary.LittleEndian.Uint64(line[i:]), binary.LittleEndian.Uint64(line[i+8:])
				for w := range keyWays {
					k := &p.next[prev][w]
					if k.n == 0 {
						break
					}
					if (w0^k.w[0])&k.m[0]|(w1^k.w[1])&k.m[1] == 0 {
						fi, i, hit = k.fi, i+int(k.n), true
						break
					}
				}
			}
			if !hit {
				key, next, st := p.str(line, i)
				if st != strOK {
					return LineMalformed, errBadJSON, st == strFallback
				}
				fi = fieldOf(key)
				if next == i+len(key)+2 && next < len(line) && line[next] == ':' {
					p.learn(prev, line[i:next+1], fi) // a key without escapes
				}
				i = skipWS(line, next)
				if i >= len(line) || line[i] != ':' {
					return LineMalformed, errBadJSON, false
				}
				i++
			}
			prev = keyOther
			if fi != evidence.FieldNone {
				prev = int(fi)
			}
			i = skipWS(line, i)
			if i >= len(line) {
				return LineMalformed, errBadJSON, false
			}
			switch c := line[i]; {
			case c == '"':
				val, next, st := p.str(line, i)
				if st != strOK {
					return LineMalformed, errBadJSON, st == strFallback
				}
				if fi != evidence.FieldNone {
					p.f.set(fi, tString, val)
				}
				i = next
			case c == '-' || (c >= '0' && c <= '9'):
				next, ok := number(line, i)
				if !ok {
					return LineMalformed, errBadJSON, false
				}
				if fi != evidence.FieldNone {
					p.f.set(fi, tNumber, line[i:next])
				}
				i = next
			default:
				next, st := p.skipValue(line, i, 0)
				if st != strOK {
					return LineMalformed, errBadJSON, st == strFallback
				}
				if fi != evidence.FieldNone {
					typ := uint8(tOther)
					if c == 't' || c == 'f' { // skipValue checked the literal
						typ = tBool
					}
					p.f.set(fi, typ, nil)
				}
				i = next
			}
			i = skipWS(line, i)
			if i >= len(line) {
				return LineMalformed, errBadJSON, false
			}
			if line[i] == '}' {
				i++
				break
			}
			if line[i] != ',' {
				return LineMalformed, errBadJSON, false
			}
			i = skipWS(line, i+1)
		}
	}
	if skipWS(line, i) != len(line) {
		return LineMalformed, errBadJSON, false
	}
	return LineEvidence, nil, false
}

type strStatus uint8

const (
	strOK       strStatus = iota
	strBad                // invalid JSON
	strFallback           // valid perhaps, but encoding/json must decide
)

// class of each byte inside a JSON string: 0 plain ASCII, 1 quote, 2
// backslash, 3 control (invalid), 4 non-ASCII.
var strClass = func() (t [256]uint8) {
	for c := 0; c < 0x20; c++ {
		t[c] = 3
	}
	t['"'] = 1
	t['\\'] = 2
	for c := 0x80; c < 0x100; c++ {
		t[c] = 4
	}
	return t
}()

const (
	ones = 0x0101010101010101
	high = 0x8080808080808080
)

// specialBytes flags (with its high bit) the bytes of w, eight bytes of a
// string read little-endian, that end a run of plain ASCII: a quote, a
// backslash, a control character or a byte from 0x80. A flag may also
// be set above the first flagged byte (a borrow carries into the next
// byte), never below it, so the lowest flag is exact.
func specialBytes(w uint64) uint64 {
	zero := func(v uint64) uint64 { return (v - ones) &^ v & high }
	return zero(w^('"'*ones)) | zero(w^('\\'*ones)) | (w-0x20*ones)&^w&high | w&high
}

// keyLit is a key as it appeared in a line, quotes and colon included
// (`"time":`), as two little-endian words and masks, to be compared with
// the bytes of the next line in two loads.
type keyLit struct {
	w, m [2]uint64
	n    uint8          // its length, 0 for none; at most 16
	fi   evidence.Field // fieldOf the key
}

// Parser.next is indexed by the field number of the key before, or:
const (
	keyStart = int(evidence.NumFields)     // the object's first key
	keyOther = int(evidence.NumFields) + 1 // after a key the report does not read
)

// keyWays is how many keys Parser.next remembers after each key: the
// logs of several writers, optional keys left out or not, and attributed
// lines among others give a key up to a few successors, and a miss costs
// a scan of the key and a look-up of its field.
const keyWays = 4

// learn puts lit (`"key":`, no escapes) first among the keys expected
// after the key prev, pushing the oldest out.
func (p *Parser) learn(prev int, lit []byte, fi evidence.Field) {
	if len(lit) > 16 {
		return
	}
	ks := &p.next[prev]
	copy(ks[1:], ks[:keyWays-1])
	k := &ks[0]
	if fi != evidence.FieldNone && keyLits[fi].n == uint8(len(lit)) {
		*k = keyLits[fi] // the usual spelling, made once
		return
	}
	k.set(lit, fi)
}

// keyLits holds each field's key as the evidence writer spells it.
var keyLits = func() (t [evidence.NumFields]keyLit) {
	for _, f := range evidence.Fields() {
		if lit := `"` + f.Name() + `":`; len(lit) <= 16 {
			t[f].set([]byte(lit), f)
		}
	}
	return t
}()

// set makes k stand for lit (at most 16 bytes).
func (k *keyLit) set(lit []byte, fi evidence.Field) {
	var b [16]byte
	copy(b[:], lit)
	k.w[0], k.w[1] = binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
	k.m = [2]uint64{}
	for j := range lit {
		k.m[j/8] |= 0xff << (8 * (j % 8))
	}
	k.n, k.fi = uint8(len(lit)), fi
}

// str reads the JSON string starting at line[i] == '"'. The result points
// into line when the string has no escapes, else into p.arena.
func (p *Parser) str(line []byte, i int) ([]byte, int, strStatus) {
	start := i + 1
	j := start
	// Eight bytes at a time up to the first byte that is not plain ASCII:
	// most strings (keys, names, times) end there, at their quote.
	for j+8 <= len(line) {
		if m := specialBytes(binary.LittleEndian.Uint64(line[j:])); m != 0 {
			j += bits.TrailingZeros64(m) >> 3
			if line[j] == '"' {
				return line[start:j], j + 1, strOK
			}
			break
		}
		j += 8
	}
	nonASCII := false
	for ; j < len(line); j++ {
		switch strClass[line[j]] {
		case 0:
			continue
		case 1:
			s := line[start:j]
			if nonASCII && !utf8.Valid(s) {
				return nil, 0, strFallback
			}
			return s, j + 1, strOK
		case 2:
			return p.strEscaped(line, start, j, nonASCII)
		case 3:
			return nil, 0, strBad
		case 4:
			nonASCII = true
		}
	}
	return nil, 0, strBad
}

// strEscaped decodes a string from start whose first escape is at j;
// nonASCII says whether the bytes before it had any.
func (p *Parser) strEscaped(line []byte, start, j int, nonASCII bool) ([]byte, int, strStatus) {
	a0 := len(p.arena)
	p.arena = append(p.arena, line[start:j]...)
	for j < len(line) {
		c := line[j]
		switch strClass[c] {
		case 0:
			p.arena = append(p.arena, c)
			j++
		case 1:
			s := p.arena[a0:len(p.arena):len(p.arena)]
			if nonASCII && !utf8.Valid(s) {
				return nil, 0, strFallback
			}
			return s, j + 1, strOK
		case 3:
			return nil, 0, strBad
		case 4:
			nonASCII = true
			p.arena = append(p.arena, c)
			j++
		case 2:
			if j+1 >= len(line) {
				return nil, 0, strBad
			}
			switch e := line[j+1]; e {
			case '"', '\\', '/':
				p.arena = append(p.arena, e)
			case 'b':
				p.arena = append(p.arena, '\b')
			case 'f':
				p.arena = append(p.arena, '\f')
			case 'n':
				p.arena = append(p.arena, '\n')
			case 'r':
				p.arena = append(p.arena, '\r')
			case 't':
				p.arena = append(p.arena, '\t')
			case 'u':
				if j+6 > len(line) {
					return nil, 0, strBad
				}
				r := rune(0)
				for _, h := range line[j+2 : j+6] {
					var v byte
					switch {
					case h >= '0' && h <= '9':
						v = h - '0'
					case h >= 'a' && h <= 'f':
						v = h - 'a' + 10
					case h >= 'A' && h <= 'F':
						v = h - 'A' + 10
					default:
						return nil, 0, strBad
					}
					r = r<<4 | rune(v)
				}
				if r >= 0xD800 && r < 0xE000 {
					return nil, 0, strFallback // surrogates: encoding/json's rules apply
				}
				p.arena = utf8.AppendRune(p.arena, r)
				j += 4
			default:
				return nil, 0, strBad
			}
			j += 2
		}
	}
	return nil, 0, strBad
}

// number scans a JSON number at line[i], returning its end.
func number(line []byte, i int) (int, bool) {
	if line[i] == '-' {
		i++
	}
	if i >= len(line) {
		return 0, false
	}
	switch c := line[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		for i < len(line) && line[i] >= '0' && line[i] <= '9' {
			i++
		}
	default:
		return 0, false
	}
	if i < len(line) && line[i] == '.' {
		i++
		d := i
		for i < len(line) && line[i] >= '0' && line[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false
		}
	}
	if i < len(line) && (line[i] == 'e' || line[i] == 'E') {
		i++
		if i < len(line) && (line[i] == '+' || line[i] == '-') {
			i++
		}
		d := i
		for i < len(line) && line[i] >= '0' && line[i] <= '9' {
			i++
		}
		if i == d {
			return 0, false
		}
	}
	return i, true
}

// skipValue validates and skips any JSON value at line[i].
func (p *Parser) skipValue(line []byte, i, depth int) (int, strStatus) {
	if i >= len(line) {
		return 0, strBad
	}
	switch c := line[i]; {
	case c == '"':
		_, next, st := p.str(line, i)
		return next, st
	case c == '-' || (c >= '0' && c <= '9'):
		next, ok := number(line, i)
		if !ok {
			return 0, strBad
		}
		return next, strOK
	case c == 't':
		return literal(line, i, "true")
	case c == 'f':
		return literal(line, i, "false")
	case c == 'n':
		return literal(line, i, "null")
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return 0, strFallback
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		i = skipWS(line, i+1)
		if i < len(line) && line[i] == end {
			return i + 1, strOK
		}
		for {
			if c == '{' {
				if i >= len(line) || line[i] != '"' {
					return 0, strBad
				}
				_, next, st := p.str(line, i)
				if st != strOK {
					return 0, st
				}
				i = skipWS(line, next)
				if i >= len(line) || line[i] != ':' {
					return 0, strBad
				}
				i = skipWS(line, i+1)
			}
			next, st := p.skipValue(line, i, depth+1)
			if st != strOK {
				return 0, st
			}
			i = skipWS(line, next)
			if i >= len(line) {
				return 0, strBad
			}
			if line[i] == end {
				return i + 1, strOK
			}
			if line[i] != ',' {
				return 0, strBad
			}
			i = skipWS(line, i+1)
		}
	}
	return 0, strBad
}

func literal(line []byte, i int, lit string) (int, strStatus) {
	if len(line)-i < len(lit) || string(line[i:i+len(lit)]) != lit {
		return 0, strBad
	}
	return i + len(lit), strOK
}

func skipWS(line []byte, i int) int {
	for i < len(line) {
		switch line[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// parseSlow reads a line with encoding/json. It is the reference the fast
// path must agree with and the fallback for what the fast path leaves alone.
func (p *Parser) parseSlow(line []byte, rec *Sighting) (LineKind, error) {
	p.f.reset()
	if len(bytes.TrimLeft(line, " \t\r\n")) == 0 {
		return LineBlank, nil
	}
	if !json.Valid(line) {
		return LineMalformed, errBadJSON
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return LineMalformed, errBadJSON
	}
	m, ok := v.(map[string]any)
	if !ok {
		return LineMalformed, errNotObject
	}
	p.arena = p.arena[:0]
	for k, v := range m {
		fi := fieldOf([]byte(k))
		if fi == evidence.FieldNone {
			continue
		}
		switch v := v.(type) {
		case string:
			p.f.set(fi, tString, []byte(v))
		case json.Number:
			p.f.set(fi, tNumber, []byte(v))
		case bool:
			p.f.set(fi, tBool, nil)
		default:
			p.f.set(fi, tOther, nil)
		}
	}
	if !utf8.Valid(line) {
		// encoding/json replaced bytes that are not UTF-8 with U+FFFD, so
		// that different names would read the same. Read such strings
		// again, keeping every byte.
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(line, &raw); err == nil {
			for k, v := range raw {
				fi := fieldOf([]byte(k))
				if fi == evidence.FieldNone || len(v) == 0 || v[0] != '"' || utf8.Valid(v) {
					continue
				}
				p.f.val[fi] = keepBytes(v)
			}
		}
	}
	return toSighting(&p.f, rec)
}

// keepBytes decodes a JSON string literal that holds bytes that are not
// UTF-8 and returns it escaped the way the evidence writer escapes (\xHH;
// see evidence.Escape), so the report shows the bytes instead of U+FFFD.
// Such bytes can only stand for themselves in JSON, and never sit inside
// an escape sequence, so the valid runs between them decode on their own.
func keepBytes(lit []byte) []byte {
	body := lit[1 : len(lit)-1]
	var out []byte
	for len(body) > 0 {
		i := 0
		for i < len(body) {
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			i += size
		}
		var s string
		json.Unmarshal(append(append([]byte{'"'}, body[:i]...), '"'), &s)
		out = append(out, s...)
		if i == len(body) {
			break
		}
		out = append(out, body[i])
		body = body[i+1:]
	}
	return []byte(evidence.Escape(string(out)))
}
