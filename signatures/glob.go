package signatures

import "strings"

// TFTP file patterns: a tftp_files entry with * (any run of characters,
// none included) or ? (exactly one character) is a shell-style pattern
// over the last path element, compared without regard to ASCII case. No
// other character is special, so a listed name never needs escaping.

// isPattern reports whether a tftp_files entry is a pattern.
func isPattern(f string) bool { return strings.ContainsAny(f, "*?") }

// minPatternLiteral is how many characters other than * and ? a pattern
// must have: "*" or "*.?" would refuse every transfer.
const minPatternLiteral = 3

// checkPattern says what is wrong with a pattern, or "" when nothing is.
func checkPattern(p string) string {
	lit := 0
	for i := 0; i < len(p); i++ {
		if p[i] != '*' && p[i] != '?' {
			lit++
		}
	}
	if lit < minPatternLiteral {
		return "a pattern needs at least 3 characters other than * and ? (it would match nearly every file)"
	}
	if strings.Contains(p, "**") {
		return "** is the same as *: write one"
	}
	return ""
}

// globFold matches name (any case) against pattern (lower case) with the
// classic two-pointer walk: on a mismatch after a *, the * takes one more
// character and the rest is tried again. It is linear in practice and at
// worst len(name)*len(pattern), allocates nothing, and needs no
// compilation.
func globFold(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == lower(name[n])):
			p++
			n++
		case star >= 0:
			mark++
			p, n = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// filePattern is a compiled tftp_files pattern: where it is listed, and
// its longest literal run (lower case), which a name must contain. That
// test is a cheap filter in front of the walk.
type filePattern struct {
	sig     uint16
	idx     uint32
	pattern string
	literal string
}

func newFilePattern(sig, idx int, p string) filePattern {
	best := ""
	for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == '*' || r == '?' }) {
		if len(part) > len(best) {
			best = part
		}
	}
	return filePattern{sig: uint16(sig), idx: uint32(idx), pattern: p, literal: best}
}

// containsFold reports whether s (any case) contains sub (lower case).
func containsFold(s, sub string) bool {
	n := len(sub)
	if n == 0 {
		return true
	}
	for i := 0; i+n <= len(s); i++ {
		if lower(s[i]) == sub[0] && equalFold(s[i:i+n], sub) {
			return true
		}
	}
	return false
}
