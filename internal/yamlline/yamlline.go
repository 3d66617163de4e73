// Package yamlline finds the line of a YAML syntax error: the YAML library
// names the line where the enclosing block begins, not the line of the mistake.
package yamlline

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// window bounds the search after the reported line, so a mistake deep in
// a million-line list costs a few bounded parses, not a million.
const window = 1 << 16

var lineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Locate returns the line (from 1) of the syntax error err that decoding
// data with the YAML library gave, and err's message without the library's
// "yaml: line N: " prefix. The line is the first one at which the text read
// so far fails with that message: the line of a bad indent, not of the
// block it breaks. For an error without a line it returns 0 and the message.
func Locate(data []byte, err error) (line int, msg string) {
	m := lineError.FindStringSubmatch(err.Error())
	if m == nil {
		msg = err.Error()
		if len(msg) > 6 && msg[:6] == "yaml: " {
			msg = msg[6:]
		}
		return 0, msg
	}
	reported, _ := strconv.Atoi(m[1])
	msg = m[2]
	// ends[k-1] is the offset just past line k.
	var ends []int
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			ends = append(ends, len(data))
			break
		}
		i += j + 1
		ends = append(ends, i)
	}
	lo := max(reported, 1)
	hi := min(len(ends), lo+window)
	if lo > hi {
		// Past the last line (the library also counts a lone \r as a
		// line break): the last line it is.
		return max(len(ends), 1), msg
	}
	failsAt := func(k int) bool { return failsWith(data[:ends[k-1]], msg) }
	if !failsAt(hi) {
		return max(reported, 1), msg
	}
	// The smallest k in [lo, hi] whose first k lines fail with msg.
	for lo < hi {
		mid := lo + (hi-lo)/2
		if failsAt(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, msg
}

// failsWith reports whether decoding every document of data fails with msg.
func failsWith(data []byte, msg string) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			m := lineError.FindStringSubmatch(err.Error())
			return m != nil && m[2] == msg
		}
	}
}
