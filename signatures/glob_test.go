package signatures

import (
	"regexp"
	"strings"
	"testing"
)

const patternFile = `serial: 1
signatures:
  - id: exact
    family: Exact
    tftp_files: [mirai.arm7]
  - id: loader
    family: Loader
    tftp_files: ["mirai.*", "*.arm7", "tftp?.sh", "*bins*x86"]
`

func TestMatchFilePatterns(t *testing.T) {
	s, err := Parse("patterns.yaml", []byte(patternFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"mirai.arm7":             "mirai.arm7", // the exact listing wins over both patterns
		"MIRAI.MIPS":             "mirai.*",
		`C:\tmp\Mirai.x86`:       "mirai.*",
		"/tftpboot/dvrHelp.ARM7": "*.arm7",
		"x.arm7":                 "*.arm7",
		"tftp1.sh":               "tftp?.sh",
		"TFTP2.SH":               "tftp?.sh",
		"bins.x86":               "*bins*x86",
		"mybinsfor.x86":          "*bins*x86",
		"tftp12.sh":              "",
		"tftp.sh":                "",
		"mirai":                  "",
		"arm7":                   "",
		"x.arm7.bak":             "",
		"pxelinux.0":             "",
		"mirai.arm7/":            "",
		"":                       "",
	} {
		m, ok := s.MatchFile(name)
		got := ""
		if ok {
			got = m.File
		}
		if got != want {
			t.Errorf("MatchFile(%q) = %q, want %q", name, got, want)
		}
	}
}

// globRegexp is the reference the fast matcher is checked against.
func globRegexp(p string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for _, c := range p {
		switch c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

// asciiOnlyLower lowers ASCII letters only, as matching does.
func asciiOnlyLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}

// FuzzGlob: globFold agrees with a regexp built from the pattern, on
// bytes (a ? is one byte, as TFTP names are bytes).
func FuzzGlob(f *testing.F) {
	for _, c := range [][2]string{{"*.arm7", "X.ARM7"}, {"mirai.*", "mirai."}, {"a*b*c", "aXbYbc"}, {"??x", "abx"}, {"*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, p, name string) {
		if len(p) > 64 || len(name) > 256 || strings.ContainsAny(p, "\x00") {
			return
		}
		p = asciiOnlyLower(p)
		// The reference works on bytes: map every byte to a rune of its own.
		toRunes := func(s string) string {
			r := make([]rune, len(s))
			for i := 0; i < len(s); i++ {
				r[i] = rune(s[i]) + 0x100
				if s[i] == '*' || s[i] == '?' {
					r[i] = rune(s[i])
				}
			}
			return string(r)
		}
		want := globRegexp(toRunes(p)).MatchString(toRunes(asciiOnlyLower(name)))
		if got := globFold(p, name); got != want {
			t.Fatalf("globFold(%q, %q) = %v, want %v", p, name, got, want)
		}
	})
}

// TestExportSuricataPatterns: the pcre of a pattern rule, read as a Go
// regexp, matches read requests for the names the set matches and not the
// others.
func TestExportSuricataPatterns(t *testing.T) {
	s, err := Parse("patterns.yaml", []byte(patternFile))
	if err != nil {
		t.Fatal(err)
	}
	out := export(t, s, "suricata")
	pcre := regexp.MustCompile(`msg:"WORMSINK Loader TFTP GET \*\.arm7"; dsize:<\d+; content:"\|00 01\|"; depth:2; content:"\.arm7\|00\|"; distance:0; nocase; pcre:"/(.*?)/i"`).FindStringSubmatch(out)
	if pcre == nil {
		t.Fatalf("no rule for *.arm7 of the expected shape:\n%s", out)
	}
	re := regexp.MustCompile(`(?i)` + pcre[1])
	for name, want := range map[string]bool{"dvrhelper.arm7": true, `C:\x\Y.ARM7`: true, "/a/b.arm7": true, "arm7": false, "x.arm7.sh": false, "a/.arm7x": false} {
		req := "\x00\x01" + name + "\x00octet\x00"
		if got := re.MatchString(req); got != want {
			t.Errorf("pcre on %q: %v, want %v", name, got, want)
		}
		if _, got := s.MatchFile(name); got != want && name != "arm7" {
			t.Errorf("MatchFile(%q) = %v, the rule says %v", name, got, want)
		}
	}
}

// FuzzIndexFold: the vectorised case-insensitive search agrees with the
// plain byte-by-byte one.
func FuzzIndexFold(f *testing.F) {
	f.Add([]byte("GET /shell?cd+/tmp;busybox+TFTP+-r+tftp2.sh"), []byte("tftp2.sh"))
	f.Add([]byte("aAaAab"), []byte("aab"))
	f.Add([]byte("|\x00\x01"), []byte("\x00\x01"))
	f.Fuzz(func(t *testing.T, data, needle []byte) {
		needle = []byte(asciiOnlyLower(string(needle)))
		want := -1
		for i := 0; i+len(needle) <= len(data); i++ {
			if asciiOnlyLower(string(data[i:i+len(needle)])) == string(needle) {
				want = i
				break
			}
		}
		if got := indexFold(data, needle); got != want {
			t.Fatalf("indexFold(%q, %q) = %d, want %d", data, needle, got, want)
		}
	})
}
