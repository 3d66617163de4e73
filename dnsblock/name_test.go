package dnsblock

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestDottedName checks the word-at-a-time dotted form of a question name
// against the label-by-label one: capitals of every kind, bytes above 0x7f,
// dots inside labels, a length byte of 46 ('.'), names of every length.
func TestDottedName(t *testing.T) {
	for _, wire := range [][]byte{
		{0},
		[]byte("\x03WWW\x06Cached\x07EXAMPLE\x00"),
		[]byte("\x01@\x01[\x01`\x01{\x01A\x01Z\x01a\x01z\x00"),
		[]byte("\x08\xc1\xda\xe1\xfa\x80\xff\x7f\x00\x03com\x00"),
		[]byte("\x03a.b\x07example\x00"),
		[]byte("\x03abc\x03d.e\x00"),
		append(append([]byte{46}, bytes.Repeat([]byte("ABCDEFGHIJ"), 5)[:46]...), 0),
		append(append([]byte{63}, bytes.Repeat([]byte{'Q'}, 63)...), 2, 'x', 'Y', 0),
	} {
		checkDotted(t, wire)
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("aAzZ09-_.@[`{\x00\x7f\x80\xc1\xfa")
	for range 20000 {
		var wire []byte
		for range r.IntN(6) {
			l := 1 + r.IntN(63)
			if len(wire)+1+l > maxNameWire-1 {
				break
			}
			wire = append(wire, byte(l))
			for range l {
				if r.IntN(4) == 0 {
					wire = append(wire, alphabet[r.IntN(len(alphabet))])
				} else {
					wire = append(wire, byte(r.IntN(256)))
				}
			}
		}
		checkDotted(t, append(wire, 0))
	}
}

func checkDotted(t *testing.T, wire []byte) {
	t.Helper()
	var a, b [256]byte
	got, gotCut := dottedName(wire, a[:0])
	want, wantCut := dottedLabels(wire, b[:0])
	if !bytes.Equal(got, want) || gotCut != wantCut {
		t.Fatalf("dottedName(%q) = %q, %d; label by label %q, %d", wire, got, gotCut, want, wantCut)
	}
}

// FuzzDottedName compares the two ways to the dotted form on any name
// parseQuery accepts.
func FuzzDottedName(f *testing.F) {
	f.Add([]byte("\x03WWW\x06Cached\x07EXAMPLE\x00"))
	f.Add([]byte("\x03a.b\x07example\x00"))
	f.Fuzz(func(t *testing.T, wire []byte) {
		// Keep the labels parseQuery accepts: 1-63 bytes, 255 in all.
		off := 0
		for off < len(wire) && wire[off] != 0 {
			l := int(wire[off])
			if l > 63 || off+1+l >= len(wire) || off+1+l > maxNameWire-1 {
				return
			}
			off += 1 + l
		}
		if off >= len(wire) {
			return
		}
		checkDotted(t, wire[:off+1])
	})
}

// TestCacheKeyNames checks that the cache key, built from the dotted text
// when it can be, still tells apart every two names that differ (a label
// holding a '.' against two labels) and nothing else but case.
func TestCacheKeyNames(t *testing.T) {
	key := func(wire string) string {
		msg := append([]byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"), wire...)
		msg = append(msg, 0, 1, 0, 1) // A, IN
		var q query
		if err := parseQuery(msg, &q, make([]byte, 256)); err != nil {
			t.Fatalf("%q: %v", wire, err)
		}
		return string(appendKey(nil, &q))
	}
	same := [][2]string{
		{"\x03WwW\x07Example\x00", "\x03www\x07example\x00"},
		{"\x03A.B\x07example\x00", "\x03a.b\x07EXAMPLE\x00"},
	}
	for _, p := range same {
		if key(p[0]) != key(p[1]) {
			t.Errorf("%q and %q: different keys", p[0], p[1])
		}
	}
	distinct := []string{
		"\x00",
		"\x01a\x01b\x00",
		"\x03a.b\x00",
		"\x01a\x00",
		"\x01b\x00",
		"\x02ab\x00",
		"\x04a\x01b.\x00", // wire-like bytes inside a label
		"\x01a\x01b\x01.\x00",
		"\x03a\x02b\x00",
		"\x02\x03a\x02b\x00\x00", // its text is the wire form of "\x03a.b\x00"
	}
	seen := map[string]string{}
	for _, w := range distinct {
		k := key(w)
		if o, ok := seen[k]; ok {
			t.Errorf("%q and %q share the key %q", o, w, k)
		}
		seen[k] = w
	}
}

// TestCacheEntryLine checks that a cache entry still fits one cache line:
// a hit loads it from memory, and a second line is a second load.
func TestCacheEntryLine(t *testing.T) {
	if n := unsafe.Sizeof(cacheEntry{}); n > 64 {
		t.Errorf("cacheEntry is %d bytes, more than a 64-byte line", n)
	}
}
