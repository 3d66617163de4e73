package evidence

import (
	"unicode/utf8"
)

// MaxStringLen is the longest string value an evidence line carries, in
// bytes as written (after escaping). Longer values are cut and the line
// records the original length in a field named after the value with "_len"
// appended (file_len, qname_len, mode_len), so a flood of long names cannot
// make lines long.
const MaxStringLen = 255

// Escape makes s valid UTF-8 without losing a byte, so that two different
// names never log the same: a byte that is not part of valid UTF-8 becomes
// \xHH (two lowercase hex digits), and a backslash becomes \\ where it would
// otherwise read as the start of one of those two escapes (before another
// backslash, before an "x", or before an escaped byte). Every other
// backslash stays single, so Windows paths read as they were sent. Unescape
// is the inverse. Valid UTF-8 without such backslashes comes back unchanged
// and unallocated.
func Escape(s string) string {
	out, _ := escapeCut(s, -1)
	return out
}

// escapeCut escapes s and cuts the result at max bytes (no cut when max is
// negative), never inside an escape or a UTF-8 sequence. cut reports whether
// anything was left out.
func escapeCut(s string, max int) (out string, cut bool) {
	if clean(s) {
		if max < 0 || len(s) <= max {
			return s, false
		}
		n := max
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		return s[:n], true
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		var tok []byte
		var step int
		var tmp [4]byte
		switch c := s[i]; {
		case c == '\\':
			step = 1
			if i+1 < len(s) && (s[i+1] == '\\' || s[i+1] == 'x' || startsInvalid(s[i+1:])) {
				tok = append(tmp[:0], '\\', '\\')
			} else {
				tok = append(tmp[:0], '\\')
			}
		case c < utf8.RuneSelf:
			tok, step = append(tmp[:0], c), 1
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size <= 1 {
				tok, step = append(tmp[:0], '\\', 'x', hexDigit[c>>4], hexDigit[c&15]), 1
			} else {
				tok, step = append(tmp[:0], s[i:i+size]...), size
			}
		}
		if max >= 0 && len(b)+len(tok) > max {
			return string(b), true
		}
		b = append(b, tok...)
		i += step
	}
	return string(b), false
}

const hexDigit = "0123456789abcdef"

// clean reports whether s escapes to itself: valid UTF-8 and no backslash
// before a backslash or an "x".
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return utf8.ValidString(s[i:]) && cleanBackslashes(s[i:])
		}
		if c == '\\' && i+1 < len(s) && (s[i+1] == '\\' || s[i+1] == 'x') {
			return false
		}
	}
	return true
}

func cleanBackslashes(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '\\' && (s[i+1] == '\\' || s[i+1] == 'x') {
			return false
		}
	}
	return true
}

// startsInvalid reports whether s begins with a byte Escape writes as \xHH.
func startsInvalid(s string) bool {
	if s[0] < utf8.RuneSelf {
		return false
	}
	r, size := utf8.DecodeRuneInString(s)
	return r == utf8.RuneError && size <= 1
}

// Unescape reverses Escape: \\ is a backslash, \xHH the byte HH, and any
// other backslash itself.
func Unescape(s string) string {
	i := 0
	for i < len(s) && s[i] != '\\' {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for i < len(s) {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b = append(b, c)
			i++
			continue
		}
		switch {
		case s[i+1] == '\\':
			b = append(b, '\\')
			i += 2
		case s[i+1] == 'x' && i+3 < len(s) && isHex(s[i+2]) && isHex(s[i+3]):
			b = append(b, unhex(s[i+2])<<4|unhex(s[i+3]))
			i += 4
		default:
			b = append(b, '\\')
			i++
		}
	}
	return string(b)
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
