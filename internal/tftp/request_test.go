package tftp

import (
	"bytes"
	"testing"
)

func rrq(op byte, parts ...string) []byte {
	b := []byte{0, op}
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	return b
}

func TestParseRequest(t *testing.T) {
	type opt struct{ k, v string }
	tests := []struct {
		name string
		in   []byte
		op   uint16
		file string
		mode string
		opts []opt
	}{
		{"plain", rrq(1, "msblast.exe", "octet"), 1, "msblast.exe", "octet", nil},
		{"write", rrq(2, "x.cfg", "netascii"), 2, "x.cfg", "netascii", nil},
		{"mode case", rrq(1, "MSBLAST.EXE", "OCTET"), 1, "MSBLAST.EXE", "OCTET", nil},
		{"netascii mixed", rrq(1, "a", "NetAscii"), 1, "a", "NetAscii", nil},
		{"mail", rrq(1, "a", "mail"), 1, "a", "mail", nil},
		{"path", rrq(1, `C:\WINDOWS\system32\msblast.exe`, "octet"), 1, `C:\WINDOWS\system32\msblast.exe`, "octet", nil},
		{"options", rrq(1, "pxelinux.0", "octet", "tsize", "0", "blksize", "1432", "timeout", "3"), 1, "pxelinux.0", "octet",
			[]opt{{"tsize", "0"}, {"blksize", "1432"}, {"timeout", "3"}}},
		{"padding", append(rrq(1, "a", "octet"), 0, 0, 0), 1, "a", "octet", nil},
		{"options padding", append(rrq(1, "a", "octet", "blksize", "512"), 0, 0), 1, "a", "octet", []opt{{"blksize", "512"}}},
	}
	for _, tc := range tests {
		r, err := ParseRequest(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if r.Op != tc.op || string(r.File) != tc.file || string(r.Mode) != tc.mode {
			t.Errorf("%s: got op %d file %q mode %q", tc.name, r.Op, r.File, r.Mode)
		}
		var got []opt
		r.EachOption(func(k, v []byte) { got = append(got, opt{string(k), string(v)}) })
		if len(got) != len(tc.opts) {
			t.Errorf("%s: options %v, want %v", tc.name, got, tc.opts)
			continue
		}
		for i := range got {
			if got[i] != tc.opts[i] {
				t.Errorf("%s: options %v, want %v", tc.name, got, tc.opts)
			}
		}
	}
}

func TestParseRequestRejects(t *testing.T) {
	bad := map[string][]byte{
		"empty":          nil,
		"short":          {0, 1, 'a'},
		"data":           append([]byte{0, 3, 0, 1}, bytes.Repeat([]byte("x"), 512)...),
		"ack":            {0, 4, 0, 1},
		"error":          rrq(5, "\x00\x01nope"),
		"opcode high":    {1, 1, 'a', 0, 'o', 'c', 't', 'e', 't', 0},
		"no file":        rrq(1, "", "octet"),
		"no mode":        {0, 1, 'a', 0},
		"bad mode":       rrq(1, "a", "binary"),
		"unterminated":   {0, 1, 'a', 0, 'o', 'c', 't', 'e', 't'},
		"file only":      {0, 1, 'a', 'b', 'c'},
		"odd options":    rrq(1, "a", "octet", "blksize"),
		"unterminated o": append(rrq(1, "a", "octet"), "blksize\x00512"...),
		"empty opt name": rrq(1, "a", "octet", "", "512"),
		"dns-like":       []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01"),
		"too long":       rrq(1, string(bytes.Repeat([]byte("a"), 1500)), "octet"),
	}
	for name, in := range bad {
		if r, err := ParseRequest(in); err == nil {
			t.Errorf("%s: parsed %+v, want error", name, r)
		}
	}
}

func BenchmarkParseRequest(b *testing.B) {
	p := rrq(1, `C:\WINDOWS\system32\msblast.exe`, "OCTET", "blksize", "1432", "tsize", "0")
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseRequest(p)
		if err != nil || r.Op != 1 {
			b.Fatal(err)
		}
	}
}

// FuzzParseRequest: no input panics, and what parses is self-consistent.
func FuzzParseRequest(f *testing.F) {
	f.Add(rrq(1, "msblast.exe", "octet"))
	f.Add(rrq(2, "a", "NETASCII", "blksize", "1432"))
	f.Add(append(rrq(1, "a", "octet"), 0, 0))
	f.Add([]byte{0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := ParseRequest(p)
		if err != nil {
			return
		}
		if r.Op != OpRRQ && r.Op != OpWRQ || len(r.File) == 0 || !validMode(r.Mode) {
			t.Fatalf("accepted %+v", r)
		}
		if bytes.IndexByte(r.File, 0) >= 0 || bytes.IndexByte(r.Mode, 0) >= 0 {
			t.Fatalf("NUL inside a field: %+v", r)
		}
		n := 0
		r.EachOption(func(k, v []byte) {
			if len(k) == 0 || bytes.IndexByte(k, 0) >= 0 || bytes.IndexByte(v, 0) >= 0 {
				t.Fatalf("bad option %q=%q", k, v)
			}
			n++
		})
		if r.HasOptions() != (n > 0) {
			t.Fatalf("HasOptions %v with %d options", r.HasOptions(), n)
		}
	})
}
