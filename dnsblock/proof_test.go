package dnsblock

import (
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
)

// digProof runs the real dig, failing (never skipping) when it is missing:
// scripts/deps.sh installs it.
func digProof(t *testing.T, addr netip.AddrPort, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("dig")
	if err != nil {
		t.Fatal("dig not installed: run scripts/deps.sh (dnsutils)")
	}
	all := append([]string{"@" + addr.Addr().String(), "-p", fmt.Sprint(addr.Port()), "+tries=1", "+time=5"}, args...)
	out, err := exec.Command(bin, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", all, err, out)
	}
	return string(out)
}

var digCookie = regexp.MustCompile(`COOKIE: ([0-9a-f]+)`)

// What each DNS query proves about its source address: a lone UDP query
// nothing (datagram), one over TCP a completed handshake (tcp), one that
// echoes the server cookie of an earlier answer that it received it
// (exchange). dig +cookie sends a client cookie and prints the server's;
// dig +cookie=HEX sends that whole cookie back.
func TestDNSProof(t *testing.T) {
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{blackhole(t)}}, newSource(t, testSigs), rec)
	addr := s.UDPAddr()

	out := digProof(t, addr, "+cookie", "worm.example", "A")
	m := digCookie.FindStringSubmatch(out)
	if m == nil || len(m[1]) != 2*(clientCookieLen+serverCookieLen) {
		t.Fatalf("no client+server cookie in the answer:\n%s", out)
	}
	if !strings.Contains(out, "192.0.2.66") {
		t.Fatalf("not the sinkhole answer:\n%s", out)
	}
	echoed := digProof(t, addr, "+cookie="+m[1], "worm.example", "A")
	if !strings.Contains(echoed, "192.0.2.66") || strings.Contains(echoed, "BADCOOKIE") {
		t.Fatalf("answer to the echoed cookie:\n%s", echoed)
	}
	// A made-up server cookie (what a forger without our answer would
	// send) proves nothing, and neither does a query without a cookie.
	forged := m[1][:16] + "01000000" + m[1][24:32] + "0000000000000000"
	digProof(t, addr, "+cookie="+forged, "worm.example", "A")
	digProof(t, addr, "+nocookie", "worm.example", "A")
	digProof(t, addr, "+tcp", "+nocookie", "worm.example", "A")

	evs := rec.Events()
	want := []evidence.Proof{evidence.ProofDatagram, evidence.ProofExchange, evidence.ProofDatagram, evidence.ProofDatagram, evidence.ProofTCP}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, e := range evs {
		if e.Proof != want[i] {
			t.Errorf("query %d (%s): proof %v, want %v", i, e.Transport, e.Proof, want[i])
		}
	}
}

// A cookie costs the answer 28 bytes of option and nothing else: the reply
// to a query with a client cookie is the reply without one plus the
// option, so the cookie is no amplifier beyond the 12 bytes the query
// spent on it plus 16.
func TestDNSCookieAnswerSize(t *testing.T) {
	s := startShim(t, Config{Upstreams: []string{blackhole(t)}}, newSource(t, testSigs), nil)
	plain := ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	withCookie := ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA, func(m *dns.Msg) {
		m.SetEdns0(1232, false)
		o := m.IsEdns0()
		o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	})
	if d := withCookie.Len() - plain.Len(); d != 4+clientCookieLen+serverCookieLen {
		t.Errorf("the cookie adds %d bytes", d)
	}
	c, ok := withCookie.IsEdns0().Option[0].(*dns.EDNS0_COOKIE)
	if !ok || !strings.HasPrefix(c.Cookie, "0102030405060708") || len(c.Cookie) != 2*(clientCookieLen+serverCookieLen) {
		t.Errorf("cookie option %v", withCookie.IsEdns0().Option)
	}
}
