package signatures

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"unsafe"
)

// source gives the file's bytes from the start, each time it is called:
// a big file is read in several passes rather than held in memory.
type source func() (io.Reader, error)

func bytesSource(data []byte) source {
	return func() (io.Reader, error) { return bytes.NewReader(data), nil }
}

// lineReader yields lines (with their line break) from r; long lines are
// assembled in a reused buffer.
type lineReader struct {
	br   *bufio.Reader
	long []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line, valid until the following call, or io.EOF.
func (l *lineReader) next() ([]byte, error) {
	b, err := l.br.ReadSlice('\n')
	if err == nil || (errors.Is(err, io.EOF) && len(b) > 0) {
		return b, nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	l.long = append(l.long[:0], b...)
	for {
		b, err = l.br.ReadSlice('\n')
		l.long = append(l.long, b...)
		if err == nil || errors.Is(err, io.EOF) {
			return l.long, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// Big signature files are mostly one long block list of plain names under
// "domains:". Decoding each of them as a YAML node costs about 200 bytes
// and a microsecond, so a million-name file would need ~300 MB and over a
// second. prescanPlainLists takes such entries out before YAML sees the file: the
// YAML decoder reads the file with those lines blanked (line numbers stay
// the same), and the decoder takes the names from here when it meets the
// domains key they belong to. Anything unusual (a continuation line, a
// quoted or aliased entry, a list the decoder never meets) is left to YAML, or the
// whole file is decoded again without this shortcut.

// plainList is the names taken out of one domains block.
type plainList struct {
	domains []Domain
	decoded bool // the decoder met its domains key and took these names
}

// prescanned is what prescanPlainLists took out of a file.
type prescanned struct {
	lists  map[int]*plainList // by the line of their "domains:" key
	blanks []int32            // numbers of the lines to blank, in order
	count  int
}

// prescanPlainLists scans the file for block sequences of plain names under a
// "domains:" key. The names are validated and stored in one arena; a name
// that fails validation stays for YAML, which reports it with its line.
// It returns nil when the shortcut does not apply.
func prescanPlainLists(open source) (*prescanned, error) {
	l := &prescanned{lists: map[int]*plainList{}}
	// First pass: count, so the arena and lists are allocated once.
	var arena []byte
	sizes := map[int]int{} // entries per list, counted in the first pass
	for pass := 0; pass < 2; pass++ {
		total, entries := 0, 0
		inList, keyIndent, dashIndent, keyLine := false, 0, -1, 0
		var cur *plainList
		prevTaken := false
		r, err := open()
		if err != nil {
			return nil, err
		}
		lr := newLineReader(r)
		line := 0
		for {
			text, err := lr.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
			line++
			text = bytes.TrimSuffix(text, []byte("\n"))
			text = bytes.TrimSuffix(text, []byte("\r"))
			indent := 0
			for indent < len(text) && text[indent] == ' ' {
				indent++
			}
			body := text[indent:]
			blank := len(body) == 0 || body[0] == '#'
			switch {
			case !inList:
				if isDomainsKey(body) {
					inList, keyIndent, dashIndent, keyLine, cur, prevTaken = true, indent, -1, line, nil, false
				}
			case blank:
			case dashIndent < 0 && indent >= keyIndent && len(body) >= 2 && body[0] == '-' && body[1] == ' ':
				dashIndent = indent
				fallthrough
			case indent == dashIndent && len(body) >= 2 && body[0] == '-' && body[1] == ' ':
				prevTaken = false
				if name, ok := plainEntry(body[2:]); ok && validName(name) {
					name = bytes.TrimSuffix(name, []byte("."))
					total += len(name)
					entries++
					prevTaken = true
					if pass == 0 {
						sizes[keyLine]++
					} else {
						if cur == nil {
							cur = &plainList{domains: make([]Domain, 0, sizes[keyLine])}
							l.lists[keyLine] = cur
						}
						start := len(arena)
						for _, c := range name {
							arena = append(arena, lower(c))
						}
						cur.domains = append(cur.domains, Domain{Line: int32(line), Name: unsafeString(arena[start:])})
						l.blanks = append(l.blanks, int32(line))
						l.count++
					}
				}
			case indent > dashIndent && dashIndent >= 0:
				// A continuation line: fine after a YAML entry, but it would
				// change a taken-out plain scalar, so give up the shortcut.
				if prevTaken {
					return nil, nil
				}
			default:
				// The list ends. A line YAML could still attach to the key
				// once the taken-out lines are blank would change the file's
				// meaning: give up the shortcut.
				if indent > keyIndent || indent == keyIndent && len(body) >= 1 && body[0] == '-' {
					return nil, nil
				}
				inList = false
				if isDomainsKey(body) {
					inList, keyIndent, dashIndent, keyLine, cur, prevTaken = true, indent, -1, line, nil, false
				}
			}
		}
		if pass == 0 {
			if total == 0 {
				return l, nil
			}
			arena = make([]byte, 0, total)
			l.blanks = make([]int32, 0, entries)
		}
	}
	return l, nil
}

// unsafeString views arena bytes as a string. The arena is never written
// again once a name is appended (it was sized in the first pass, so append
// never reallocates), which is what makes this safe.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func isDomainsKey(body []byte) bool {
	rest, ok := bytes.CutPrefix(body, []byte("domains:"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " \t")
	return len(rest) == 0 || rest[0] == '#'
}

// plainEntry accepts what YAML reads as a plain string equal to its text: a
// name starting with a letter, digit or '_' (so not an alias, anchor, tag,
// quote or flow collection), optionally followed by a comment.
func plainEntry(s []byte) ([]byte, bool) {
	i := 0
	for i < len(s) && s[i] == ' ' {
		i++
	}
	s = s[i:]
	if len(s) == 0 {
		return nil, false
	}
	c := s[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
		return nil, false
	}
	n := 0
	for n < len(s) {
		c := s[n]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			n++
			continue
		}
		break
	}
	name, rest := s[:n], s[n:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) > 0 && (rest[0] != '#' || len(rest) == len(s[n:])) {
		return nil, false // more than a name, or a '#' glued to it
	}
	switch string(name) {
	case "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "yes", "no", "on", "off":
		return nil, false // YAML gives these other types; leave them to it
	}
	return name, true
}

// validName reports whether canonicalName would accept a plain entry as
// an exact name (plainEntry already excluded '*' and a leading '.'): labels
// of 1 to 63 letters, digits, '-' or '_', 253 characters in all, one
// trailing dot allowed. Anything else is left to YAML and canonicalName,
// which report it with its line.
func validName(b []byte) bool {
	if n := len(b); n > 0 && b[n-1] == '.' {
		b = b[:n-1]
	}
	if len(b) == 0 || len(b) > 253 {
		return false
	}
	label := 0
	for _, c := range b {
		if c == '.' {
			if label == 0 {
				return false
			}
			label = 0
			continue
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0
}

// blankReader serves the file with the taken-out lines replaced by spaces
// (the line breaks stay, so YAML's line numbers are the file's).
type blankReader struct {
	lr     *lineReader
	line   int32
	blanks []int32
	rest   []byte // what is left of the current line
}

func newBlankReader(r io.Reader, blanks []int32) *blankReader {
	return &blankReader{lr: newLineReader(r), blanks: blanks}
}

func (r *blankReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.rest) == 0 {
			text, err := r.lr.next()
			if err != nil {
				if n > 0 && errors.Is(err, io.EOF) {
					return n, nil
				}
				return n, err
			}
			r.line++
			if len(r.blanks) > 0 && r.blanks[0] == r.line {
				r.blanks = r.blanks[1:]
				for i, c := range text {
					if c != '\n' && c != '\r' {
						text[i] = ' ' // the line reader's buffer is ours to change
					}
				}
			}
			r.rest = text
		}
		c := copy(p[n:], r.rest)
		n += c
		r.rest = r.rest[c:]
	}
	return n, nil
}
