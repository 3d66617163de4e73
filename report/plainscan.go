package report

import (
	"bytes"
	"encoding/binary"
	"math/bits"

	"wormsink/evidence"
)

// plainMax is the longest line scanPlain reads; longer ones (rare: the
// writer's lines are 150 to 400 bytes) go to scan.
const plainMax = 1024

// scanPlain is scan for the lines that make up nearly every log: printable
// ASCII without a backslash, no whitespace between tokens, values that are
// strings, numbers, literals or arrays of strings. One pass over the line
// checks the bytes eight at a time and notes where its quotes are; since no
// backslash can escape one, every quote then opens or closes a string, and
// strings are jumped over from quote to quote instead of being read byte by
// byte. Every structural byte between them is still checked, so a line
// scanPlain accepts is valid JSON, and it leaves in p.f what scan leaves
// (FuzzScanPlain compares the two). It returns false, with p.f to be reset,
// for any line it cannot read so: scan then decides, malformed or not.
func (p *Parser) scanPlain(line []byte) bool {
	n := len(line)
	if n < 2 || n > plainMax || line[0] != '{' || line[n-1] != '}' {
		return false
	}
	// The pass: a bit per byte for its quotes, and any byte that is a
	// backslash, a control byte or not ASCII sends the line to scan.
	full := n &^ 63
	if full > 0 && blockMasks(line[:full], p.quotes[:full/64]) {
		return false
	}
	words := full / 64
	if full < n {
		tail := padding
		copy(tail[:], line[full:])
		if blockMasks(tail[:], p.quotes[words:words+1]) {
			return false
		}
		words++
	}
	// Every quote opens or closes a string; q hands them out in order.
	// Whatever moves i past a quote takes it from q, so that q's next
	// quote is always the first at or after i.
	q := quoteCursor{bits: &p.quotes, last: words - 1, m: p.quotes[0]}

	i := 1
	if n == 2 {
		return true // {}
	}
	for {
		// A key: i is at its opening quote, e at its closing one (no
		// escapes). Its field comes from a table indexed by a hash of
		// the key, compared in two words: unlike guessing from the key
		// before, this costs the same whatever order the keys come in.
		if line[i] != '"' || q.next() != i {
			return false
		}
		e := q.next()
		if e < 0 || e+1 >= n || line[e+1] != ':' {
			return false
		}
		key := line[i+1 : e]
		var fi evidence.Field
		if len(key) >= 2 && i+16 <= n {
			kl := &plainKeys[keyHash(key)]
			w0, w1 := binary.LittleEndian.Uint64(line[i:]), binary.LittleEndian.Uint64(line[i+8:])
			if int(kl.n) == len(key)+3 && (w0^kl.w[0])&kl.m[0]|(w1^kl.w[1])&kl.m[1] == 0 {
				fi = kl.fi
			} else {
				fi = fieldOf(key)
			}
		} else {
			fi = fieldOf(key)
		}
		i = e + 2
		// Its value; i < n since the line ends in '}' and a key's
		// colon is not that byte.
		switch c := line[i]; {
		case c == '"':
			if q.next() != i {
				return false
			}
			e := q.next()
			if e < 0 {
				return false
			}
			if fi != evidence.FieldNone {
				p.f.set(fi, tString, line[i+1:e])
			}
			i = e + 1
		case c == '-' || (c >= '0' && c <= '9'):
			e, ok := number(line, i)
			if !ok {
				return false
			}
			if fi != evidence.FieldNone {
				p.f.set(fi, tNumber, line[i:e])
			}
			i = e
		case c == 't' || c == 'f' || c == 'n':
			lit, typ := "null", uint8(tOther)
			switch c {
			case 't':
				lit, typ = "true", tBool
			case 'f':
				lit, typ = "false", tBool
			}
			e, st := literal(line, i, lit)
			if st != strOK {
				return false
			}
			if fi != evidence.FieldNone {
				p.f.set(fi, typ, nil)
			}
			i = e
		case c == '[':
			// An array of strings (names of a summary line, candidate
			// subscribers); anything else in it goes to scan.
			i++
			if line[i] == ']' {
				i++
			} else {
				for {
					if line[i] != '"' || q.next() != i {
						return false
					}
					e := q.next()
					if e < 0 || e+1 >= n {
						return false
					}
					i = e + 1
					if line[i] == ',' {
						i++
						continue
					}
					if line[i] != ']' {
						return false
					}
					i++
					break
				}
			}
			if fi != evidence.FieldNone {
				p.f.set(fi, tOther, nil)
			}
		default:
			return false // an object, whitespace, or not JSON
		}
		if i >= n {
			return false
		}
		switch line[i] {
		case ',':
			i++
			if i >= n-1 {
				return false
			}
		case '}':
			return i == n-1
		default:
			return false
		}
	}
}

// plainKeys holds the key of each field (as keyLits) at its keyHash;
// slots two fields share, and fields longer than keyLits holds, are
// left empty and go to fieldOf.
var plainKeys = func() (t [256]keyLit) {
	for _, f := range evidence.Fields() {
		if len(f.Name()) < 2 || keyLits[f].n == 0 {
			continue
		}
		if h := keyHash([]byte(f.Name())); keyTable[h] == f {
			t[h] = keyLits[f]
		}
	}
	return t
}()

// padding fills the end of a line's last 64 bytes for the pass: no
// quote, nothing that sends the line to scan.
var padding = [64]byte(bytes.Repeat([]byte{'a'}, 64))

// quoteCursor hands out the positions of a line's quotes in order, from
// a bit per byte (scanPlain's pass).
type quoteCursor struct {
	bits *[plainMax / 64]uint64
	blk  int    // the word of bits being read
	last int    // the last word with bits of the line
	m    uint64 // what is left of bits[blk]
}

// next returns the next quote's position, or -1 when there is none.
func (c *quoteCursor) next() int {
	for c.m == 0 {
		if c.blk >= c.last {
			return -1
		}
		c.blk++
		c.m = c.bits[c.blk]
	}
	i := c.blk*64 + bits.TrailingZeros64(c.m)
	c.m &= c.m - 1
	return i
}

// quoteBits returns a bit per byte of w (read little-endian), set for
// its quotes: exact, since the sum cannot carry from one byte into the
// next; the multiplication gathers the eight high bits into the top byte.
func quoteBits(w uint64) uint64 {
	const low7 = 0x7f7f7f7f7f7f7f7f
	v := w ^ ('"' * ones)
	return (^((v&low7 + low7) | v) & high >> 7) * 0x0102040810204080 >> 56
}

// blockMasksGo sets quotes[k] to a bit per byte of the k-th 64 bytes of
// b (len(b) a multiple of 64), set for its quotes, and reports whether b
// holds a backslash, a control byte or a byte from 0x80.
func blockMasksGo(b []byte, quotes []uint64) bool {
	if len(b) < 64 || len(quotes) < len(b)/64 {
		return true // nothing marked: the line goes to scan
	}
	var bad uint64
	for k := range len(b) / 64 {
		var acc uint64
		for j := range 8 {
			w := binary.LittleEndian.Uint64(b[k*64+j*8:])
			bad |= (w-0x20*ones)&^w | w | hasZero(w^('\\'*ones))
			acc |= quoteBits(w) << (uint(j) * 8)
		}
		quotes[k] = acc
	}
	return bad&high != 0
}

// hasZero flags (with its high bit) the zero bytes of v; a flag may also
// be set above a zero byte (a borrow), so it says only whether there is
// one.
func hasZero(v uint64) uint64 { return (v - ones) &^ v & high }
