package signatures

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any bytes either compile or fail with a *Error naming the file;
// nothing panics, and a compiled set matches every name it lists.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains: ['*.x.example', {name: y.example, action: nodata}]\n"))
	f.Add([]byte("serial: 1\nsignatures:\n  - id: a\n    family: A\n    payloads: [{proto: udp, contains: '|00 01|a'}]\n"))
	f.Add([]byte("serial: 1\nsignatures: []\n"))
	f.Add([]byte("serial: 1\nsignatures:\n  - id: a\n    family: A\n    tftp_files: ['*x.sh']\n    payloads: [{proto: tcp, port: 23, command: tftp}]\n  - id: g\n    family: G\n    payloads: [{proto: tcp, command: tftp, evidence: weak}]\n"))
	f.Add([]byte("serial: 1\nexpires: 2027-01-01T00:00:00Z\nsignatures: []\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains:\n      - a.example\n      - name: b.example\n      - c.example # x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sameDecode(t, data)
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.File != "fuzz.yaml" || se.Msg == "" {
				t.Fatalf("error %v (%T) is not a signatures.Error for the file", err, err)
			}
			return
		}
		if s.Serial() == 0 {
			t.Fatal("serial 0 accepted")
		}
		for _, sig := range s.Signatures() {
			if sig.ID == "" || sig.Family == "" {
				t.Fatalf("signature without id or family: %+v", sig)
			}
			for _, p := range sig.Payloads {
				if p.anyName(&sig) && p.Evidence != Weak {
					t.Fatalf("a strong command rule without tftp_files: %+v", sig)
				}
				if p.Command != "" && (p.Proto != TCP || len(p.Contains) > 0) {
					t.Fatalf("command rule %+v", p)
				}
			}
			for _, d := range sig.Domains {
				q := d.Name
				if d.Wildcard {
					q = "sub." + d.Name
				}
				m, ok := s.MatchName(strings.ToUpper(q) + ".")
				if !ok {
					t.Fatalf("listed %q does not match %q", d.Pattern(), q)
				}
				// An exact listing of the same name may shadow a wildcard.
				if !d.Wildcard && m.Domain.Name != d.Name {
					t.Fatalf("%q matched %q", q, m.Domain.Pattern())
				}
			}
			for _, file := range sig.TFTPFiles {
				if _, ok := s.MatchFile(`C:\X\` + strings.ToUpper(file)); !ok {
					t.Fatalf("listed file %q does not match", file)
				}
			}
		}
	})
}

var fuzzSet = func() *Set {
	s, err := Parse("fuzz", []byte(`serial: 1
signatures:
  - id: a
    family: A
    tftp_files: [msblast.exe, a.b]
    domains: ['*.w.example', 'exact.example', '*.deep.w.example', {name: n.example, action: nxdomain}]
`))
	if err != nil {
		panic(err)
	}
	return s
}()

// FuzzMatch: matching never panics and agrees with a slow reference.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{"exact.example", "x.w.example.", "W.EXAMPLE", "a.deep.w.example", `C:\msblast.exe`, "..", ".", "", "\x00\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got := ""
		if m, ok := fuzzSet.MatchName(q); ok {
			got = m.Domain.Pattern()
		}
		if want := slowMatchName(fuzzSet, q); got != want {
			t.Fatalf("MatchName(%q) = %q, want %q", q, got, want)
		}
		_, gotFile := fuzzSet.MatchFile(q)
		last := strings.ToLower(lastElement(q))
		if wantFile := last == "msblast.exe" || last == "a.b"; gotFile != wantFile {
			t.Fatalf("MatchFile(%q) = %v, want %v", q, gotFile, wantFile)
		}
	})
}

// slowMatchName is the RPZ rule written plainly: exact first, then the
// longest wildcard suffix.
func slowMatchName(s *Set, q string) string {
	q = strings.TrimSuffix(q, ".")
	if q == "" || len(q) > 253 {
		return ""
	}
	lq := asciiLower(q)
	best := ""
	for _, sig := range s.Signatures() {
		for _, d := range sig.Domains {
			if !d.Wildcard && d.Name == lq {
				return d.Name
			}
			if d.Wildcard && strings.HasSuffix(lq, "."+d.Name) && len(d.Name)+2 > len(best) {
				best = d.Pattern()
			}
		}
	}
	return best
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}
