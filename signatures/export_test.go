package signatures

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"wormsink/internal/testutil"

	"github.com/miekg/dns"
)

const exportFile = `serial: 2026112507
signatures:
  - id: demo
    family: Demo
    references: [CVE-2003-0352, MS03-026]
    tftp_files: [worm.exe, "we;ird\".exe"]
    domains:
      - sink.worm.example
      - name: "*.wild.worm.example"
      - name: gone.worm.example
        action: nxdomain
        evidence: weak
      - name: quiet.worm.example
        action: nodata
    payloads:
      - proto: tcp
        port: 4444
        contains: "tftp -i |22 3b|"
        nocase: true
      - proto: icmp
        contains: "|AA AA AA AA|"
`

func exportSet(t *testing.T) *Set {
	t.Helper()
	s, err := Parse("export.yaml", []byte(exportFile))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func export(t *testing.T, s *Set, format string, ips ...netip.Addr) string {
	t.Helper()
	var b bytes.Buffer
	if err := Export(&b, s, format, ips); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestExportSuricataShape(t *testing.T) {
	out := export(t, exportSet(t), "suricata")
	rule := regexp.MustCompile(`^alert (udp|tcp|icmp) any any -> any (\d+|any) \((.*)\)$`)
	opt := regexp.MustCompile(`^\s*([a-z_]+)(?::(.*))?$`)
	sids := map[string]bool{}
	rules := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		m := rule.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a rule: %s", line)
		}
		rules++
		body := m[3]
		if !strings.HasSuffix(body, ";") {
			t.Fatalf("options do not end with ';': %s", line)
		}
		// Split on ';' outside quotes: quoted values must not contain one.
		var opts []string
		inQ, start := false, 0
		for i := 0; i < len(body); i++ {
			switch body[i] {
			case '\\':
				i++
			case '"':
				inQ = !inQ
			case ';':
				if !inQ {
					opts = append(opts, body[start:i])
					start = i + 1
				}
			}
		}
		if inQ {
			t.Fatalf("unbalanced quotes: %s", line)
		}
		seen := map[string]string{}
		for _, o := range opts {
			om := opt.FindStringSubmatch(o)
			if om == nil {
				t.Fatalf("bad option %q in %s", o, line)
			}
			seen[om[1]] = om[2]
			if om[1] == "content" && strings.Count(om[2], "|")%2 != 0 {
				t.Fatalf("unbalanced hex in %s", o)
			}
		}
		for _, k := range []string{"msg", "sid", "rev", "content", "classtype"} {
			if _, ok := seen[k]; !ok {
				t.Fatalf("rule lacks %s: %s", k, line)
			}
		}
		if sids[seen["sid"]] {
			t.Fatalf("sid %s used twice", seen["sid"])
		}
		sids[seen["sid"]] = true
		if _, ok := seen["reference"]; !ok || !strings.Contains(line, "reference:cve,2003-0352;") {
			t.Fatalf("rule lacks the CVE reference: %s", line)
		}
	}
	if rules != 7 {
		t.Fatalf("%d rules, want 2 tftp files x (read, write) + tcp + icmp x (v4, v6):\n%s", rules, out)
	}
	for _, want := range []string{`content:"|00 02|"; depth:2;`, "alert icmp any any -> any any (msg:\"WORMSINK Demo payload demo\"; ip_proto:1; itype:8;", " ip_proto:58; itype:128;"} {
		if !strings.Contains(out, want) {
			t.Errorf("rules lack %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, `content:"tftp -i |22 3B|"; nocase;`) || !strings.Contains(out, "alert tcp any any -> any 4444 ") {
		t.Errorf("payload rule rendered wrong:\n%s", out)
	}
	// sids are stable from one export to the next.
	if again := export(t, exportSet(t), "suricata"); again != out {
		t.Error("export is not deterministic")
	}
}

func TestExportHosts(t *testing.T) {
	out := export(t, exportSet(t), "hosts", netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7"))
	for _, want := range []string{
		"192.0.2.7 sink.worm.example\n", "2001:db8::7 sink.worm.example\n",
		"0.0.0.0 gone.worm.example\n", "0.0.0.0 quiet.worm.example\n",
		":: gone.worm.example\n", ":: quiet.worm.example\n",
		"# *.wild.worm.example: wildcards cannot be expressed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("hosts export lacks %q:\n%s", want, out)
		}
	}
	// A family without a sinkhole address is blocked, not forwarded: a
	// hosts-file resolver with an upstream would leak the real address.
	out = export(t, exportSet(t), "hosts", netip.MustParseAddr("192.0.2.7"))
	if !strings.Contains(out, "192.0.2.7 sink.worm.example\n:: sink.worm.example\n") {
		t.Errorf("IPv4-only hosts export:\n%s", out)
	}
	out = export(t, exportSet(t), "hosts", netip.MustParseAddr("2001:db8::7"))
	if !strings.Contains(out, "0.0.0.0 sink.worm.example\n2001:db8::7 sink.worm.example\n") {
		t.Errorf("IPv6-only hosts export:\n%s", out)
	}
}

func TestExportUnknownFormat(t *testing.T) {
	if err := Export(&bytes.Buffer{}, Default(), "bind", nil); err == nil {
		t.Fatal("unknown format accepted")
	}
}

// TestExportRPZInUnbound loads the exported zone into a real unbound on a
// loopback port and checks every action with real queries.
func TestExportRPZInUnbound(t *testing.T) {
	unbound := testutil.Need(t, "unbound")
	checkconf := testutil.Need(t, "unbound-checkconf")
	dir := t.TempDir()
	zone := export(t, exportSet(t), "rpz", netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7"))
	if !strings.Contains(zone, " 2026112507 ") {
		t.Fatalf("SOA does not carry the serial:\n%s", zone)
	}
	if err := os.WriteFile(filepath.Join(dir, "rpz.zone"), []byte(zone), 0o644); err != nil {
		t.Fatal(err)
	}
	// Readiness: unbound answers by policy once it has loaded the zone.
	server := testutil.Daemon{Name: "unbound", Ready: testutil.AnswersRcode("gone.worm.example.", dns.RcodeNameError), Command: func(port int) (string, []string, error) {
		conf := testutil.UnboundConf(port, dir, `  verbosity: 1
  module-config: "respip iterator"
`, fmt.Sprintf("rpz:\n  name: rpz.wormsink.\n  zonefile: %q\n", filepath.Join(dir, "rpz.zone")))
		confPath := filepath.Join(dir, "unbound.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			return "", nil, err
		}
		if out, err := exec.Command(checkconf, confPath).CombinedOutput(); err != nil {
			return "", nil, fmt.Errorf("unbound-checkconf: %v\n%s", err, out)
		}
		return unbound, testutil.UnboundArgs(confPath), nil
	}}.StartT(t).Addr
	query := func(name string, qtype uint16) (*dns.Msg, error) { return rpzQuery(server, name, qtype) }

	check := func(name string, qtype uint16, rcode int, want string) {
		t.Helper()
		r, err := query(name, qtype)
		if err != nil {
			t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
		}
		got := ""
		for _, rr := range r.Answer {
			switch v := rr.(type) {
			case *dns.A:
				got = v.A.String()
			case *dns.AAAA:
				got = v.AAAA.String()
			}
		}
		if r.Rcode != rcode || got != want {
			t.Errorf("%s %s: rcode %s answer %q, want %s %q", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], got, dns.RcodeToString[rcode], want)
		}
	}
	check("sink.worm.example.", dns.TypeA, dns.RcodeSuccess, "192.0.2.7")
	check("SINK.worm.example.", dns.TypeAAAA, dns.RcodeSuccess, "2001:db8::7")
	check("a.b.wild.worm.example.", dns.TypeA, dns.RcodeSuccess, "192.0.2.7")
	check("gone.worm.example.", dns.TypeAAAA, dns.RcodeNameError, "")
	check("quiet.worm.example.", dns.TypeA, dns.RcodeSuccess, "")
	check("quiet.worm.example.", dns.TypeTXT, dns.RcodeSuccess, "")
}

func rpzQuery(server, name string, qtype uint16) (*dns.Msg, error) {
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := c.Exchange(m, server)
	return r, err
}
