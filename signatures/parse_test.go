package signatures

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Each bad file starts with "# want: LINE: message" naming the first error.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("../testdata/signatures/bad/*.yaml")
	if err != nil || len(files) < 10 {
		t.Fatalf("want at least 10 bad files, got %d (%v)", len(files), err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := bytes.Cut(data, []byte("\n"))
			want, ok := strings.CutPrefix(string(first), "# want: ")
			if !ok {
				t.Fatalf("%s does not start with '# want: LINE: message'", path)
			}
			lineStr, msg, _ := strings.Cut(want, ": ")
			line, err := strconv.Atoi(lineStr)
			if err != nil {
				t.Fatalf("bad want line %q", want)
			}
			set, err := Load(path)
			if err == nil {
				t.Fatalf("loaded %d signatures, want error %q", set.Stats().Signatures, want)
			}
			var se *Error
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *signatures.Error", err)
			}
			if se.Line != line || !strings.Contains(se.Msg, msg) {
				t.Errorf("got %q\nwant line %d with %q", err, line, msg)
			}
			if prefix := path + ":" + lineStr + ": "; !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
		})
	}
}

func TestDefaultSet(t *testing.T) {
	s := Default()
	st := s.Stats()
	if s.Serial() == 0 || st.Signatures < 8 || st.TFTPFiles < 10 || st.Payloads < 2 || st.Domains < 3 {
		t.Fatalf("built-in set too small: serial %d %+v", s.Serial(), st)
	}
	for _, sig := range s.Signatures() {
		if len(sig.References) == 0 {
			t.Errorf("signature %s has no references", sig.ID)
		}
	}
	for _, f := range []string{"msblast.exe", "penis32.exe", "teekids.exe", "mslaugh.exe", "enbiei.exe", "dllhost.exe", "svchost.exe"} {
		if _, ok := s.MatchFile(f); !ok {
			t.Errorf("built-in set misses %s", f)
		}
	}
	for _, n := range []string{"windowsupdate.com", "kimble.org", "tuiasi.ro"} {
		m, ok := s.MatchName(n)
		if !ok || m.Domain.Action != NXDomain || m.Domain.Evidence != Weak {
			t.Errorf("%s: got %+v %v, want nxdomain+weak", n, m.Domain, ok)
		}
	}
	// Legitimate Windows Update names below the DDoS target are not listed.
	if _, ok := s.MatchName("v4.windowsupdate.com"); ok {
		t.Error("v4.windowsupdate.com must not match")
	}
	// The shipped file and the embedded one are the same text.
	onDisk, err := os.ReadFile("default.yaml")
	if err != nil || !bytes.Equal(onDisk, DefaultYAML()) {
		t.Fatalf("default.yaml differs from the embedded set (%v)", err)
	}
}

func TestSpecExample(t *testing.T) {
	s, err := Load("../testdata/signatures/good/spec-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sig := s.Signatures()[0]
	if sig.ID != "blaster" || sig.Family != "Blaster" || len(sig.Aliases) != 3 || len(sig.References) != 3 {
		t.Fatalf("decoded %+v", sig)
	}
	if got := sig.Payloads[0]; got.Proto != TCP || got.Port != 4444 || string(got.Contains) != "tftp -i " || !got.NoCase {
		t.Errorf("payload 0: %+v", got)
	}
	if got := sig.Payloads[1]; got.Proto != UDP || got.Port != 0 || string(got.Contains) != "\x00\x01msblast.exe" || got.NoCase {
		t.Errorf("payload 1: %+v", got)
	}
	tests := []struct {
		q      string
		match  string // Pattern of the matched domain, "" for none
		action Action
		ev     Strength
	}{
		{"windowsupdate.com", "windowsupdate.com", NXDomain, Weak},
		{"WindowsUpdate.COM.", "windowsupdate.com", NXDomain, Weak},
		{"www.windowsupdate.com", "", 0, 0},
		{"tftp.worm.example", "", 0, 0}, // a wildcard does not cover its own name
		{"a.tftp.worm.example", "*.tftp.worm.example", Sinkhole, Strong},
		{"x.Y.TFTP.worm.example.", "*.tftp.worm.example", Sinkhole, Strong},
		{"payload.worm.example", "payload.worm.example", Sinkhole, Strong},
		{"quiet.worm.example", "quiet.worm.example", NoData, Strong},
		{"worm.example", "", 0, 0},
		{".", "", 0, 0},
		{"", "", 0, 0},
		{"com", "", 0, 0},
	}
	for _, tc := range tests {
		m, ok := s.MatchName(tc.q)
		if tc.match == "" {
			if ok {
				t.Errorf("MatchName(%q) = %s, want no match", tc.q, m.Domain.Pattern())
			}
			continue
		}
		if !ok || m.Domain.Pattern() != tc.match || m.Domain.Action != tc.action || m.Domain.Evidence != tc.ev || m.Signature.ID != "blaster" {
			t.Errorf("MatchName(%q) = %+v %v, want %s %v %v", tc.q, m.Domain, ok, tc.match, tc.action, tc.ev)
		}
	}
}

func TestWildcardPrecedence(t *testing.T) {
	s, err := Parse("t.yaml", []byte(`serial: 3
signatures:
  - id: a
    family: A
    domains: ["*.example", "*.b.example", "x.b.example"]
  - id: b
    family: B
    domains: [{name: "*.c.b.example", action: nodata}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]string{
		"z.example":         "*.example",
		"y.b.example":       "*.b.example",
		"x.b.example":       "x.b.example", // exact beats wildcard
		"q.x.b.example":     "*.b.example",
		"d.c.b.example":     "*.c.b.example",
		"e.d.c.b.example":   "*.c.b.example",
		"c.b.example":       "*.b.example",
		"b.example":         "*.example",
		"example":           "",
		"notexample":        "",
		"z.example.org":     "",
		"zexample":          "",
		"x.b.example.other": "",
	} {
		m, ok := s.MatchName(q)
		got := ""
		if ok {
			got = m.Domain.Pattern()
		}
		if got != want {
			t.Errorf("MatchName(%q) = %q, want %q", q, got, want)
		}
	}
}

// TestMatchBelow: a name whose leftmost labels cannot be listed (a label
// holding a '.') meets only wildcards covering the labels right of them,
// never an exact listing, and allocates nothing.
func TestMatchBelow(t *testing.T) {
	s, err := Parse("t.yaml", []byte(`serial: 3
signatures:
  - id: a
    family: A
    domains: ["*.b.example", "x.b.example", "*.c.b.example", "plain.example"]
`))
	if err != nil {
		t.Fatal(err)
	}
	for suffix, want := range map[string]string{
		"b.example":       "*.b.example",
		"B.Example.":      "*.b.example",
		"x.b.example":     "*.b.example", // below x.b.example: only the wildcard covers it
		"c.b.example":     "*.c.b.example",
		"d.c.b.example":   "*.c.b.example",
		"plain.example":   "",
		"example":         "",
		"":                "",
		"b.example.other": "",
	} {
		m, ok := s.MatchBelow(suffix)
		got := ""
		if ok {
			got = m.Domain.Pattern()
		}
		if got != want {
			t.Errorf("MatchBelow(%q) = %q, want %q", suffix, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { s.MatchBelow("d.c.b.example") }); n != 0 {
		t.Errorf("MatchBelow allocates %.1f times", n)
	}
}

func TestMatchFile(t *testing.T) {
	s := Default()
	for name, want := range map[string]string{
		"msblast.exe":                        "blaster",
		"MSBLAST.EXE":                        "blaster",
		"/msblast.exe":                       "blaster",
		`C:\WINDOWS\system32\msblast.exe`:    "blaster",
		`..\..\MsBlast.exe`:                  "blaster",
		"/tftpboot/x/teekids.exe":            "blaster.c",
		"svchost.exe":                        "welchia",
		"msblast.exe.txt":                    "",
		"xmsblast.exe":                       "",
		"msblast.exe/":                       "",
		"":                                   "",
		"pxelinux.0":                         "",
		"router-confg":                       "",
		"msblast.ex":                         "",
		"C:\\WINDOWS\\system32\\svchost.exe": "welchia",
	} {
		m, ok := s.MatchFile(name)
		got := ""
		if ok {
			got = m.Signature.ID
		}
		if got != want {
			t.Errorf("MatchFile(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestMatchPayload(t *testing.T) {
	s := Default()
	cmd := []byte("TFTP -I 10.1.2.3 GET msblast.exe\r\n")
	if m, ok := s.MatchPayload(TCP, 4444, cmd); !ok || m.Signature.ID != "blaster" {
		t.Errorf("shell command on 4444: %v %v", m, ok)
	}
	// On port 80 the fetch is no loader's: the weak generic command rule.
	if m, ok := s.MatchPayload(TCP, 80, cmd); !ok || m.Signature.ID != "iot.tftp-dropper.generic" || m.Payload.Evidence != Weak {
		t.Errorf("port 80 must not match the 4444 rule, only the weak generic one: %v %v", m, ok)
	}
	if _, ok := s.MatchPayload(UDP, 4444, cmd); ok {
		t.Error("udp must not match a tcp rule")
	}
	echo := bytes.Repeat([]byte{0xAA}, 64)
	if m, ok := s.MatchPayload(ICMP, 0, echo); !ok || m.Signature.ID != "welchia" {
		t.Errorf("nachi echo: %v %v", m, ok)
	}
	if _, ok := s.MatchPayload(ICMP, 0, echo[:63]); ok {
		t.Error("63 bytes of 0xAA must not match a 64-byte rule")
	}
	if !s.HasPayloadRules(ICMP) || s.HasPayloadRules(UDP) {
		t.Error("HasPayloadRules wrong")
	}
}

// nocase folds ASCII only and leaves other bytes of a hex pattern alone.
func TestNoCaseBinaryPayload(t *testing.T) {
	s, err := Parse("n.yaml", []byte("serial: 1\nsignatures:\n  - id: n\n    family: N\n    payloads:\n      - proto: tcp\n        contains: \"|90 90 E8| Xy\"\n        nocase: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Signatures()[0].Payloads[0].Contains; string(got) != "\x90\x90\xe8 xy" {
		t.Fatalf("pattern stored as % x", got)
	}
	if _, ok := s.MatchPayload(TCP, 1, []byte("..\x90\x90\xe8 XY..")); !ok {
		t.Fatal("binary nocase pattern does not match")
	}
}

func TestParseContent(t *testing.T) {
	for in, want := range map[string]string{
		"abc":             "abc",
		"|00 01|":         "\x00\x01",
		"|0001|x|ff|":     "\x00\x01x\xff",
		"tftp -i |20|GET": "tftp -i  GET",
		"|41 42 43|":      "ABC",
		"a|  0a  |b":      "a\nb",
	} {
		got, err := parseContent(in)
		if err != nil || string(got) != want {
			t.Errorf("parseContent(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "|", "||", "|0|", "|zz|", "a|00"} {
		if got, err := parseContent(in); err == nil {
			t.Errorf("parseContent(%q) = %q, want error", in, got)
		}
	}
}

// bigFile writes a signature file with n plain-string names.
func bigFile(n int) []byte {
	var b bytes.Buffer
	b.Grow(n * 32)
	w := bufio.NewWriter(&b)
	w.WriteString("serial: 1\nsignatures:\n  - id: big\n    family: Big\n    domains:\n")
	for i := 0; i < n; i++ {
		w.WriteString("      - host")
		w.WriteString(strconv.Itoa(i))
		w.WriteString(".tftp")
		w.WriteString(strconv.Itoa(i % 997))
		w.WriteString(".example\n")
	}
	w.Flush()
	return b.Bytes()
}

func TestBigSetMatches(t *testing.T) {
	s, err := Parse("big", bigFile(50_000))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50_000; i += 997 {
		q := "HOST" + strconv.Itoa(i) + ".tftp" + strconv.Itoa(i%997) + ".example."
		if _, ok := s.MatchName(q); !ok {
			t.Fatalf("%s not matched", q)
		}
		if _, ok := s.MatchName("x" + q); ok {
			t.Fatalf("x%s matched", q)
		}
	}
}

// A YAML syntax error names the line of the mistake, not the line where
// the block it breaks begins (the YAML library's own report).
func TestYAMLErrorLine(t *testing.T) {
	for _, tc := range []struct {
		text string
		line int
	}{
		{"serial: 1\nsignatures:\n  - id: blaster\n    family: Blaster\n    tftp_files: [msblast.exe]\n   domains: [a.example]\n", 6},
		{"serial: 1\nsignatures:\n  - id: blaster\n    family: Blaster\n    domains:\n      - a.example\n      - b.example\n     - c.example\n", 8},
		{"serial: 1\nsignatures:\n  - id: blaster\n    family: [Blaster\n", 4},
	} {
		_, err := Parse("s.yaml", []byte(tc.text))
		var se *Error
		if !errors.As(err, &se) || se.Line != tc.line || !strings.HasPrefix(se.Msg, "invalid YAML: ") {
			t.Errorf("%q: %v; want s.yaml:%d: invalid YAML", tc.text, err, tc.line)
		}
		path := filepath.Join(t.TempDir(), "s.yaml")
		if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); !errors.As(err, &se) || se.Line != tc.line {
			t.Errorf("Load %q: %v; want line %d", tc.text, err, tc.line)
		}
	}
}
