package report

import (
	"bytes"
	"strings"
	"testing"

	"wormsink/evidence"
	"wormsink/internal/loggen"
)

// FuzzScanPlain: a line the plain scanner accepts is one scan reads as a
// JSON object, with the same fields, types and values; any other line is
// left to scan. Each parser first reads another line, so that its
// guesses of the next key are those of a log.
func FuzzScanPlain(f *testing.F) {
	tftp, dns := seedLines(f)
	f.Add(tftp, dns)
	f.Add(dns, tftp)
	f.Add(tftp, strings.Replace(tftp, `"host":`, `"host" :`, 1))
	f.Add(tftp, strings.Replace(tftp, `"file":"msblast.exe"`, `"file":"msblast.exe","file":1`, 1))
	f.Add(tftp, strings.Replace(tftp, `"file":"msblast.exe"`, `"file":"ms`+"\x01"+`blast.exe"`, 1))
	f.Add(tftp, strings.Replace(tftp, `"file":"msblast.exe"`, `"names":["a","b"],"x":[],"y":null,"z":true,"w":false,"v":-1.5e3`, 1))
	f.Add(tftp, strings.Replace(tftp, `"file":"msblast.exe"`, `"names":["a",1]`, 1))
	f.Add(tftp, strings.Replace(tftp, `"file":"msblast.exe"`, `"x":{"a":1}`, 1))
	f.Add(tftp, strings.Replace(tftp, `"op":"read"`, `"op":"read",}`, 1))
	f.Add(tftp, tftp[:40]+`"}`)
	f.Add(dns, `{}`)
	f.Add(dns, `{"a":"`+strings.Repeat("x", 70)+`","b":01}`)
	f.Add(dns, `{"a":"`+strings.Repeat("x", 61)+`"}`)
	f.Add(dns, `{"port":1,"port":"2"}`)
	f.Fuzz(func(t *testing.T, first, line string) {
		var fast, full Parser
		var rec Sighting
		fast.Parse([]byte(first), &rec)
		full.Parse([]byte(first), &rec)
		fast.f.reset()
		full.f.reset()
		if !fast.scanPlain([]byte(line)) {
			return
		}
		kind, _, fallback := full.scan([]byte(line))
		if kind != LineEvidence || fallback {
			t.Fatalf("plain scanner read %q, scan: %v (fallback %v)", line, kind, fallback)
		}
		if fast.f.typ != full.f.typ || fast.f.wrong != full.f.wrong {
			t.Fatalf("%q: types %v (wrong %x), scan %v (wrong %x)", line, fast.f.typ, fast.f.wrong, full.f.typ, full.f.wrong)
		}
		for i, typ := range fast.f.typ {
			if typ != tNone && typ != tOther && typ != tBool && !bytes.Equal(fast.f.val[i], full.f.val[i]) {
				t.Fatalf("%q: %s is %q, scan %q", line, evidence.Field(i).Name(), fast.f.val[i], full.f.val[i])
			}
		}
	})
}

// TestScanPlainTakesLogLines: nearly every line of every log shape takes
// the plain scanner (those that do not have a backslash or a byte that
// is not ASCII in a value), and blockMasks agrees with blockMasksGo.
func TestScanPlainTakesLogLines(t *testing.T) {
	for _, v := range loggen.Variants(5_000) {
		var log bytes.Buffer
		if err := loggen.Write(&log, v.Config); err != nil {
			t.Fatal(err)
		}
		var p Parser
		plain, lines := 0, 0
		for _, l := range bytes.Split(bytes.TrimSuffix(log.Bytes(), []byte("\n")), []byte("\n")) {
			lines++
			p.f.reset()
			if p.scanPlain(l) {
				plain++
				continue
			}
			if bytes.IndexByte(l, '\\') < 0 && isASCII(l) {
				t.Errorf("%s: plain line not taken: %s", v.Name, l)
			}
		}
		if plain < lines*95/100 {
			t.Errorf("%s: %d of %d lines plain", v.Name, plain, lines)
		}
	}
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzBlockMasks: the pass in assembly (where there is one) marks what
// the pass in Go marks.
func FuzzBlockMasks(f *testing.F) {
	f.Add([]byte(`{"a":"b\\c"}`))
	f.Add([]byte("\x00\x1f\x20\x7f\x80\xff\"\\"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := (len(b) + 63) &^ 63
		if n == 0 || n > plainMax {
			return
		}
		buf := make([]byte, n)
		copy(buf, b)
		var q1, q2 [plainMax / 64]uint64
		bad1, bad2 := blockMasks(buf, q1[:n/64]), blockMasksGo(buf, q2[:n/64])
		if bad1 != bad2 || q1 != q2 {
			t.Fatalf("%q: blockMasks %v %x, blockMasksGo %v %x", b, bad1, q1, bad2, q2)
		}
	})
}

// TestPlainScannerKeepsMalformedLines: lines that look plain but are not
// valid JSON, or not evidence, are counted as malformed as before, on one
// reader and on several workers; the good lines around them are read.
func TestPlainScannerKeepsMalformedLines(t *testing.T) {
	good := `{"time":"2026-11-24T10:00:00Z","event":"dns_sinkhole","host":"10.0.0.1","port":5353,"evidence":"strong","sensor":"s1","qname":"a.example","file":"x"}`
	bad := []string{
		strings.Replace(good, `"file":"x"`, `"file":"x`+"\x01"+`"`, 1),      // a control byte in a value no column uses
		strings.Replace(good, `"file":"x"`, `"file":"x",`, 1),               // a trailing comma
		strings.Replace(good, `"port":5353`, `"port":05353`, 1),             // a leading zero
		strings.Replace(good, `"port":5353`, `"port":70000`, 1),             // out of range
		strings.Replace(good, `"qname":"a.example"`, `"qname":7`, 1),        // the wrong type
		strings.Replace(good, `"file":"x"`, `"file":"x","names":["a",]`, 1), // a bad array
		strings.Replace(good, `"file":"x"`, `"file":tru`, 1),
		strings.Replace(good, `"host":"10.0.0.1",`, ``, 1),
		`{"a":"b"}x`,
		`["a"]`,
	}
	var log strings.Builder
	for i := range 400 {
		log.WriteString(good + "\n")
		if i < len(bad) {
			log.WriteString(bad[i] + "\n")
		}
	}
	var one bytes.Buffer
	st := reportCSV(t, []byte(log.String()), 1, &one)
	if st.Malformed != uint64(len(bad)) || st.Evidence != 400 {
		t.Fatalf("one reader: %+v, want %d malformed and 400 evidence lines", st, len(bad))
	}
	if !strings.HasPrefix(st.FirstBad, "log:2: ") {
		t.Errorf("first bad line: %q", st.FirstBad)
	}
	var many bytes.Buffer
	if st2 := reportCSV(t, []byte(log.String()), 2, &many); st2 != st || !bytes.Equal(many.Bytes(), one.Bytes()) {
		t.Errorf("two workers: %+v, want %+v; reports equal: %v", st2, st, bytes.Equal(many.Bytes(), one.Bytes()))
	}
}
