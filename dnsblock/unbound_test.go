package dnsblock

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wormsink/internal/evidencetest"

	"github.com/miekg/dns"
)

// startUnbound runs a real unbound on a loopback port answering the
// e2e.test zone from local-data, and waits until it answers.
func startUnbound(t *testing.T) string {
	t.Helper()
	return startUnboundAttempt(t, 0)
}

func startUnboundAttempt(t *testing.T, attempt int) string {
	t.Helper()
	bin := "/usr/sbin/unbound"
	if _, err := os.Stat(bin); err != nil {
		var lerr error
		if bin, lerr = exec.LookPath("unbound"); lerr != nil {
			t.Skip("unbound not installed (scripts/deps.sh installs it)")
		}
	}
	dir := t.TempDir()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	var big strings.Builder
	for i := range 12 {
		fmt.Fprintf(&big, "  local-data: 'big.e2e.test. 300 IN TXT \"%03d%s\"'\n", i, strings.Repeat("y", 200))
	}
	conf := fmt.Sprintf(`server:
  interface: 127.0.0.1
  port: %d
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "%[2]s"
  pidfile: "%[2]s/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "e2e.test." static
  local-data: "e2e.test. 300 IN SOA ns.e2e.test. h.e2e.test. 1 3600 600 86400 60"
  local-data: "www.e2e.test. 300 IN A 192.0.2.10"
  local-data: "www.e2e.test. 300 IN AAAA 2001:db8::10"
  local-data: "alias.e2e.test. 300 IN CNAME target.e2e.test."
  local-data: "target.e2e.test. 300 IN A 192.0.2.11"
%[3]sremote-control:
  control-enable: no
`, port, dir, big.String())
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-d", "-c", path)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	m := new(dns.Msg)
	m.SetQuestion("www.e2e.test.", dns.TypeA)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if r, _, err := c.Exchange(m, addr); err == nil && len(r.Answer) == 1 {
			return addr
		}
		select {
		case <-done:
			// The port was free when picked; another test process may take
			// it before unbound binds it: try another one.
			if portTaken(stderr.String()) && attempt < 4 {
				return startUnboundAttempt(t, attempt+1)
			}
			t.Fatalf("unbound exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("unbound did not answer on %s: %s", addr, stderr.String())
		}
	}
}

const e2eSigs = `serial: 3
signatures:
  - id: e2eworm
    family: E2E
    domains: [worm.example, target.e2e.test]
`

func dig(t *testing.T, addr netip.AddrPort, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed (scripts/deps.sh installs dnsutils)")
	}
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
