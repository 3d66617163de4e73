package dnsblock

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"wormsink/internal/evidencetest"

	"wormsink/internal/testutil"

	"github.com/miekg/dns"
)

// startUnbound runs a real unbound on a loopback port answering the
// e2e.test zone from local-data, and waits until it answers.
func startUnbound(t *testing.T) string {
	t.Helper()
	return startUnboundWith(t, "")
}

// startUnboundWith is startUnbound with extra lines in its server: clause.
func startUnboundWith(t *testing.T, extra string) string {
	t.Helper()
	addr, _ := startUnboundOn(t, extra, 0)
	return addr
}

// startUnboundOn is startUnboundWith on a given port (0: a free one); stop
// ends that unbound before the test does.
func startUnboundOn(t *testing.T, extra string, port int) (addr string, stop func()) {
	t.Helper()
	bin := testutil.Need(t, "unbound")
	dir := t.TempDir()
	var big strings.Builder
	for i := range 12 {
		fmt.Fprintf(&big, "  local-data: 'big.e2e.test. 300 IN TXT \"%03d%s\"'\n", i, strings.Repeat("y", 200))
	}
	p := testutil.Daemon{Name: "unbound", Port: port, Ready: testutil.AnswersA("www.e2e.test."), Command: func(port int) (string, []string, error) {
		conf := testutil.UnboundConf(port, dir, `  verbosity: 0
  module-config: "iterator"
  local-zone: "e2e.test." static
  local-data: "e2e.test. 300 IN SOA ns.e2e.test. h.e2e.test. 1 3600 600 86400 60"
  local-data: "www.e2e.test. 300 IN A 192.0.2.10"
  local-data: "www.e2e.test. 300 IN AAAA 2001:db8::10"
  local-data: "alias.e2e.test. 300 IN CNAME target.e2e.test."
  local-data: "target.e2e.test. 300 IN A 192.0.2.11"
`+big.String()+extra, "")
		path := filepath.Join(dir, "unbound.conf")
		return bin, testutil.UnboundArgs(path), os.WriteFile(path, []byte(conf), 0o644)
	}}.StartT(t)
	var once sync.Once
	return p.Addr, func() { once.Do(p.Kill) }
}

const e2eSigs = `serial: 3
signatures:
  - id: e2eworm
    family: E2E
    domains: [worm.example, target.e2e.test]
`

func dig(t *testing.T, addr netip.AddrPort, args ...string) string {
	t.Helper()
	bin := testutil.Need(t, "dig")
	all := append([]string{"@" + addr.Addr().String(), "-p", fmt.Sprint(addr.Port()), "+tries=1", "+time=5"}, args...)
	out, err := exec.Command(bin, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", all, err, out)
	}
	return string(out)
}

func TestUnboundEndToEnd(t *testing.T) {
	ub := startUnbound(t)
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{ub}, CacheSize: 1000}, newSource(t, e2eSigs), rec)
	addr := s.UDPAddr()

	if out := dig(t, addr, "+short", "worm.example", "A"); strings.TrimSpace(out) != "192.0.2.66" {
		t.Errorf("listed A: %q", out)
	}
	if out := dig(t, addr, "+short", "worm.example", "AAAA"); strings.TrimSpace(out) != "2001:db8::66" {
		t.Errorf("listed AAAA: %q", out)
	}
	for _, tcp := range []string{"+notcp", "+tcp"} {
		if out := dig(t, addr, tcp, "+short", "www.e2e.test", "A"); strings.TrimSpace(out) != "192.0.2.10" {
			t.Errorf("forwarded %s: %q", tcp, out)
		}
	}
	out := dig(t, addr, "nothere.e2e.test", "A")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "SOA") {
		t.Errorf("forwarded NXDOMAIN: %s", out)
	}
	// CNAME chain into a listed name: the chain, then the sinkhole address.
	out = dig(t, addr, "+short", "alias.e2e.test", "A")
	if got := strings.Fields(out); len(got) != 2 || got[0] != "target.e2e.test." || got[1] != "192.0.2.66" {
		t.Errorf("CNAME to listed name: %q", out)
	}
	// Truncation: dig sees TC over UDP and, by itself, retries over TCP.
	out = dig(t, addr, "+ignore", "+bufsize=1232", "big.e2e.test", "TXT")
	if !strings.Contains(out, " tc ") && !strings.Contains(out, " tc;") {
		t.Errorf("no TC over UDP: %s", out)
	}
	out = dig(t, addr, "+bufsize=1232", "big.e2e.test", "TXT")
	if !strings.Contains(out, "ANSWER: 12,") {
		t.Errorf("TCP retry: %s", out)
	}

	// Byte for byte: the same query to unbound and through the shim.
	m := new(dns.Msg)
	m.SetQuestion("www.e2e.test.", dns.TypeAAAA)
	m.SetEdns0(1232, true)
	q, _ := m.Pack()
	direct := exchangeRaw(t, "udp", netip.MustParseAddrPort(ub), q)
	shimmed := exchangeRaw(t, "udp", addr, q) // first time: not cached
	if !bytes.Equal(direct[2:], shimmed[2:]) {
		t.Errorf("forwarded answer differs from unbound's\nunbound %x\nshim    %x", direct, shimmed)
	}

	evs := rec.Events()
	if len(evs) != 3 || evs[2].QName != "alias.e2e.test" || evs[2].Rule != "target.e2e.test" || evs[0].Host != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("events %+v", evs)
	}
}

// TestListedNameAnyClassThroughUnbound is defect 2: unbound answers class
// ANY with its IN data, so a listed name asked in class ANY must get the
// policy answer, and in another class REFUSED, never a forward.
func TestListedNameAnyClassThroughUnbound(t *testing.T) {
	ub := startUnbound(t)
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{ub}}, newSource(t, e2eSigs), rec)
	for _, tcp := range []string{"+notcp", "+tcp"} {
		out := dig(t, s.UDPAddr(), tcp, "-c", "ANY", "Target.E2E.test", "A")
		if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "192.0.2.66") || strings.Contains(out, "192.0.2.11") {
			t.Errorf("class ANY %s:\n%s", tcp, out)
		}
		out = dig(t, s.UDPAddr(), tcp, "-c", "CH", "target.e2e.test", "A")
		if !strings.Contains(out, "status: REFUSED") || strings.Contains(out, "192.0.2.11") {
			t.Errorf("class CH %s:\n%s", tcp, out)
		}
	}
	if n := len(rec.Events()); n != 4 {
		t.Errorf("%d evidence lines, want 4", n)
	}
}

// TestPolicyAnswersShowEDEAndSOA is defect 9 as dig shows it: an Extended
// DNS Error naming the signature when the client sent EDNS, and the policy
// SOA (minimum = --ttl) in the authority section of NXDOMAIN and NODATA.
func TestPolicyAnswersShowEDEAndSOA(t *testing.T) {
	ub := startUnbound(t)
	sigs := `serial: 11
signatures:
  - id: edeworm
    family: E2E
    domains:
      - worm.example
      - {name: nx.example, action: nxdomain}
      - {name: nodata.example, action: nodata}
      - target.e2e.test
`
	s := startShim(t, Config{Upstreams: []string{ub}, TTL: 45 * time.Second}, newSource(t, sigs), &evidencetest.Recorder{})
	for _, tc := range []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"worm.example", "A"}, []string{"status: NOERROR", "EDE: 15 (Blocked): (edeworm)", "192.0.2.66"}, []string{"AUTHORITY: 1"}},
		{[]string{"worm.example", "MX"}, []string{"status: NOERROR", "EDE: 15 (Blocked): (edeworm)", "AUTHORITY: 1", "SOA\twormsink.invalid. policy.invalid. 11 3600 600 86400 45"}, nil},
		{[]string{"nx.example", "A"}, []string{"status: NXDOMAIN", "EDE: 17 (Filtered): (edeworm)", "AUTHORITY: 1", "nx.example.\t\t45\tIN\tSOA\twormsink.invalid. policy.invalid. 11 3600 600 86400 45"}, nil},
		{[]string{"nodata.example", "AAAA"}, []string{"status: NOERROR", "ANSWER: 0", "EDE: 17 (Filtered): (edeworm)", "AUTHORITY: 1", "SOA"}, nil},
		{[]string{"alias.e2e.test", "A"}, []string{"EDE: 15 (Blocked): (edeworm)", "CNAME\ttarget.e2e.test.", "192.0.2.66"}, []string{"192.0.2.11"}},
		{[]string{"+noedns", "nx.example", "A"}, []string{"status: NXDOMAIN", "AUTHORITY: 1", "SOA"}, []string{"EDE", "OPT"}},
	} {
		for _, tcp := range []string{"+notcp", "+tcp"} {
			out := dig(t, s.UDPAddr(), append([]string{tcp}, tc.args...)...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("dig %v: no %q in\n%s", tc.args, w, out)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out, w) {
					t.Errorf("dig %v: %q in\n%s", tc.args, w, out)
				}
			}
		}
	}
}
