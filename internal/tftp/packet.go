package tftp

import "bytes"

// Error codes (RFC 1350) the sinkhole sends.
const (
	ErrNotFound = 1 // "File not found": what a refusal says
)

// IsReply reports whether p looks like a TFTP packet other than a request
// (DATA, ACK, ERROR, OACK), such as the ACK tftp-hpa sends after an ERROR.
func IsReply(p []byte) bool {
	return len(p) >= 4 && p[0] == 0 && p[1] >= OpData && p[1] <= OpOACK
}

// IsServerReply reports whether p is what only a server sends in answer to
// a request: DATA (block 1 and up), an ERROR with a NUL-terminated message,
// or an OACK of NUL-terminated option pairs. An ACK is not one: the client
// sends those.
func IsServerReply(p []byte) bool {
	if len(p) < 4 || p[0] != 0 {
		return false
	}
	switch p[1] {
	case OpData:
		return len(p) <= 4+65464 && (p[2] != 0 || p[3] != 0)
	case OpError:
		return len(p) >= 5 && p[len(p)-1] == 0 && p[2] == 0 && p[3] <= 8
	case OpOACK:
		return len(p) >= 6 && p[len(p)-1] == 0 && bytes.IndexByte(p[2:], 0) > 0
	}
	return false
}

// AppendError appends an ERROR packet (code, then msg NUL-terminated).
func AppendError(dst []byte, code uint16, msg string) []byte {
	dst = append(dst, 0, OpError, byte(code>>8), byte(code))
	dst = append(dst, msg...)
	return append(dst, 0)
}

// FitError checks that b is an ERROR and cuts its message so the packet is
// at most max bytes, still NUL-terminated; it cuts b in place. A refusal
// never larger than the request cannot amplify.
func FitError(b []byte, max int) ([]byte, bool) {
	if len(b) < 5 || b[0] != 0 || b[1] != OpError || max < 5 {
		return nil, false
	}
	if len(b) > max {
		b = b[:max]
		b[max-1] = 0
	}
	return b, true
}
