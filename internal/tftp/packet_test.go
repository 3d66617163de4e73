package tftp

import "testing"

func TestFitError(t *testing.T) {
	for _, max := range []int{5, 9, 11, 100} {
		out, ok := FitError(AppendError(nil, ErrNotFound, "denied"), max)
		if !ok || len(out) > max || out[len(out)-1] != 0 || out[1] != OpError {
			t.Fatalf("FitError(%d) = %q, %v", max, out, ok)
		}
	}
	for _, bad := range [][]byte{{0, OpData, 0, 1, 'x'}, {0, OpError, 0}, nil} {
		if _, ok := FitError(bad, 100); ok {
			t.Fatalf("FitError let %q through", bad)
		}
	}
}

func TestIsServerReply(t *testing.T) {
	yes := [][]byte{
		append([]byte{0, OpData, 0, 1}, "MZ"...),
		{0, OpData, 0, 1}, // an empty last block
		AppendError(nil, ErrNotFound, "denied"),
		{0, OpOACK, 'b', 'l', 'k', 's', 'i', 'z', 'e', 0, '5', '1', '2', 0},
	}
	no := [][]byte{
		{0, OpAck, 0, 1},
		{0, OpData, 0, 0},
		{0, OpError, 0, 1, 'x'}, // unterminated
		{0, OpOACK, 0, 0},
		rrq(1, "msblast.exe", "octet"),
		{1, OpData, 0, 1},
		nil,
	}
	for _, p := range yes {
		if !IsServerReply(p) {
			t.Errorf("IsServerReply(%q) = false", p)
		}
	}
	for _, p := range no {
		if IsServerReply(p) {
			t.Errorf("IsServerReply(%q) = true", p)
		}
	}
}

// FuzzPacket: no input panics; a request is never a reply, and its refusal
// always fits within it.
func FuzzPacket(f *testing.F) {
	f.Add(rrq(1, "msblast.exe", "octet", "blksize", "1432"))
	f.Add([]byte{0, OpData, 0, 1, 'M', 'Z'})
	f.Add(AppendError(nil, ErrNotFound, "denied"))
	f.Fuzz(func(t *testing.T, p []byte) {
		_, err := ParseRequest(p)
		if err == nil && (IsReply(p) || IsServerReply(p)) {
			t.Fatalf("%q is both a request and a reply", p)
		}
		if IsServerReply(p) && !IsReply(p) {
			t.Fatalf("%q is a server reply but no reply", p)
		}
		if err == nil {
			if out, ok := FitError(AppendError(nil, ErrNotFound, "denied"), len(p)); !ok || len(out) > len(p) {
				t.Fatalf("no refusal within %d bytes: %q", len(p), out)
			}
		}
	})
}
