package dnsblock

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"wormsink/internal/evidencetest"
)

// realAddrs are the hostile zone's addresses of names the policy lists:
// none may reach a client.
var realAddrs = []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.5", "2001:db8:bad::1"}

// leaks reports a record of r that carries a listed name's real address.
func leaks(r *dns.Msg) string {
	for _, sec := range [][]dns.RR{r.Answer, r.Ns, r.Extra} {
		for _, rr := range sec {
			for _, a := range realAddrs {
				if strings.Contains(rr.String(), "\t"+a) {
					return rr.String()
				}
			}
		}
	}
	return ""
}

func askClass(t *testing.T, network string, addr netip.AddrPort, name string, qtype, qclass uint16) *dns.Msg {
	t.Helper()
	return ask(t, network, addr, name, qtype, func(m *dns.Msg) { m.Question[0].Qclass = qclass })
}

// TestHostileNamesThroughBIND is defect 1 and 2 against a real BIND 9
// serving a hostile zone: a '.' byte inside a label, other bytes, any
// case, CNAME chains through such names, and any query class.
func TestHostileNamesThroughBIND(t *testing.T) {
	hostileNames(t, startBIND(t, hostileZone))
}

// TestHostileNamesThroughUnbound is the same with a recursive unbound in
// front of that BIND (a stub zone), as an ISP's shim sees it: unbound
// rebuilds the answers, chains included.
func TestHostileNamesThroughUnbound(t *testing.T) {
	bind := startBIND(t, hostileZone)
	ub := startUnboundWith(t, fmt.Sprintf("  do-not-query-localhost: no\n  domain-insecure: example\nstub-zone:\n  name: example\n  stub-addr: %s\nserver:\n",
		strings.Replace(bind, ":", "@", 1)))
	hostileNames(t, ub)
}

// hostileNames asks the shim in front of up for the hostile zone's names,
// over UDP and TCP, twice (the second time from the cache).
func hostileNames(t *testing.T, up string) {
	rec := &evidencetest.Recorder{}
	// BIND (and unbound) started beside a loaded test run can take seconds
	// over a name: the shim waits as long as the client does rather than
	// answer SERVFAIL, which this test would take for a wrong answer.
	s := startShim(t, Config{Upstreams: []string{up}, CacheSize: 1000, Timeout: clientWait / 2, AttemptTimeout: clientWait / 2}, newSource(t, testSigs), rec)
	type want struct {
		name   string
		class  uint16
		rcode  int
		addr   string // the address answered; "" for none
		chain  int    // CNAMEs before it
		qname  string // the evidence line's qname; "" when no evidence
		rule   string
		policy bool
	}
	cases := []want{
		{name: `x\.y.wild.example.`, class: dns.ClassINET, addr: "192.0.2.66", qname: `x\.y.wild.example`, rule: "*.wild.example", policy: true},
		{name: `X\.Y.WILD.Example.`, class: dns.ClassINET, addr: "192.0.2.66", qname: `x\.y.wild.example`, rule: "*.wild.example", policy: true},
		{name: `\000.wild.example.`, class: dns.ClassINET, addr: "192.0.2.66", qname: "\x00.wild.example", rule: "*.wild.example", policy: true},
		{name: `a.example.`, class: dns.ClassINET, addr: "192.0.2.66", chain: 2, qname: "a.example", rule: "worm.example", policy: true},
		{name: `d.example.`, class: dns.ClassINET, addr: "192.0.2.66", chain: 1, qname: "d.example", rule: `e\.f.wild.example`, policy: true},
		{name: `wOrM.example.`, class: dns.ClassANY, addr: "192.0.2.66", qname: "worm.example", policy: true},
		{name: `worm.example.`, class: dns.ClassCHAOS, rcode: dns.RcodeRefused, qname: "worm.example", policy: true},
		{name: `x\.y.wild.example.`, class: dns.ClassANY, addr: "192.0.2.66", qname: `x\.y.wild.example`, rule: "*.wild.example", policy: true},
		// Below an exact listing, a label with a '.' is not listed.
		{name: `x\.y.worm.example.`, class: dns.ClassINET, addr: "198.51.100.4"},
		{name: `safe.example.`, class: dns.ClassINET, addr: "198.51.100.6"},
	}
	policy := 0
	for round := range 2 { // the second round comes from the cache
		for _, network := range []string{"udp", "tcp"} {
			addr := s.UDPAddr()
			if network == "tcp" {
				addr = s.TCPAddr()
			}
			for _, tc := range cases {
				before := len(rec.Events())
				r := askClass(t, network, addr, tc.name, dns.TypeA, tc.class)
				if l := leaks(r); l != "" {
					t.Errorf("round %d %s %s class %d: listed name's address reached the client: %s", round, network, tc.name, tc.class, l)
				}
				if r.Rcode != tc.rcode {
					t.Errorf("round %d %s %s: rcode %s, want %s", round, network, tc.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
					continue
				}
				if tc.addr != "" {
					if len(r.Answer) != tc.chain+1 {
						t.Errorf("round %d %s %s: answer %v", round, network, tc.name, r.Answer)
						continue
					}
					a, ok := r.Answer[tc.chain].(*dns.A)
					if !ok || a.A.String() != tc.addr {
						t.Errorf("round %d %s %s: answer %v, want %s", round, network, tc.name, r.Answer, tc.addr)
					}
				}
				evs := rec.Events()
				if !tc.policy {
					if len(evs) != before {
						t.Errorf("%s: evidence for an unlisted name: %+v", tc.name, evs[before:])
					}
					continue
				}
				policy++
				if len(evs) != before+1 {
					t.Errorf("round %d %s %s: %d evidence lines", round, network, tc.name, len(evs)-before)
					continue
				}
				e := evs[before]
				if e.QName != tc.qname || e.Rule != tc.rule || e.Transport != network {
					t.Errorf("round %d %s %s: evidence qname %q rule %q transport %s", round, network, tc.name, e.QName, e.Rule, e.Transport)
				}
			}
		}
	}
	if st := s.Stats(); st.Sinkholed != uint64(policy) {
		t.Errorf("sinkholed %d, want %d", st.Sinkholed, policy)
	}
}

// TestLongCNAMEChainFailsClosed: an answer with more CNAMEs than the shim
// follows (17, the listed name last) cannot be checked, so the client gets
// SERVFAIL, counted, never the unchecked answer. (BIND itself stops after
// 12 links and answers SERVFAIL, which the shim relays: the zone's long0
// chain in TestHostileNamesThroughBIND's zone shows nothing leaks there.)
func TestLongCNAMEChainFailsClosed(t *testing.T) {
	up := hostileUpstream(t, func(q string) []string {
		var recs []string
		prev := q
		for i := range 16 {
			next := fmt.Sprintf("l%d.hostile.test.", i)
			recs = append(recs, prev+" 300 IN CNAME "+next)
			prev = next
		}
		return append(recs, prev+" 300 IN CNAME worm.example.", "worm.example. 300 IN A 198.51.100.1")
	}, true)
	s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 1000}, newSource(t, testSigs), &evidencetest.Recorder{})
	for _, network := range []string{"udp", "tcp"} {
		addr := s.UDPAddr()
		if network == "tcp" {
			addr = s.TCPAddr()
		}
		if r := ask(t, network, addr, "long.hostile.test", dns.TypeA); r.Rcode != dns.RcodeServerFailure || leaks(r) != "" {
			t.Errorf("%s: rcode %s, %d answers", network, dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	}
	if st := s.Stats(); st.Unchecked != 2 || st.ServFail != 2 {
		t.Errorf("stats %+v", st)
	}
	// Through BIND the same zone's 12-link chain is BIND's own SERVFAIL.
	bind := startBIND(t, hostileZone)
	s2 := startShim(t, Config{Upstreams: []string{bind}}, newSource(t, testSigs), &evidencetest.Recorder{})
	if r := ask(t, "udp", s2.UDPAddr(), "long0.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure || leaks(r) != "" {
		t.Errorf("BIND long chain: %v", r)
	}
}

// hostileUpstream answers every query with the answer section recs gives
// for the question name, in that order, compressed or not.
func hostileUpstream(t *testing.T, recs func(q string) []string, compress bool) *testUpstream {
	return startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		m.Compress = compress
		for _, s := range recs(r.Question[0].Name) {
			rr, err := dns.NewRR(s)
			if err != nil {
				panic(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
}

// TestCNAMEChainAnyOrder: an upstream that shuffles the chain, spells its
// names in another case, or slips a listed name's record in off the chain
// does not get it past the policy.
func TestCNAMEChainAnyOrder(t *testing.T) {
	orders := [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}, {2, 0, 1}, {1, 0, 2}, {0, 2, 1}}
	for _, compress := range []bool{true, false} {
		for _, order := range orders {
			up := hostileUpstream(t, func(q string) []string {
				if strings.HasPrefix(strings.ToLower(q), "off.") {
					return []string{q + " 300 IN A 198.51.100.9", "WORM.example. 300 IN A 198.51.100.1"}
				}
				recs := []string{q + ` 300 IN CNAME A\.B.hostile.test.`, `a\.b.HOSTILE.test. 300 IN CNAME Worm.Example.`, "wORM.example. 300 IN A 198.51.100.1"}
				out := make([]string, 0, 3)
				for _, i := range order {
					out = append(out, recs[i])
				}
				return out
			}, compress)
			rec := &evidencetest.Recorder{}
			s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 100}, newSource(t, testSigs), rec)
			for round := range 2 {
				r := ask(t, "udp", s.UDPAddr(), "q.hostile.test", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
				if l := leaks(r); l != "" || len(r.Answer) != 3 {
					t.Fatalf("order %v compress %v round %d: %v", order, compress, round, r.Answer)
				}
				c1, ok1 := r.Answer[0].(*dns.CNAME)
				c2, ok2 := r.Answer[1].(*dns.CNAME)
				a, ok3 := r.Answer[2].(*dns.A)
				if !ok1 || !ok2 || !ok3 || c1.Target != `A\.B.hostile.test.` || c2.Hdr.Name != `A\.B.hostile.test.` ||
					c2.Target != "Worm.Example." || a.Hdr.Name != "Worm.Example." || a.A.String() != "192.0.2.66" {
					t.Fatalf("order %v compress %v round %d: %v", order, compress, round, r.Answer)
				}
				r = ask(t, "tcp", s.TCPAddr(), "off.hostile.test", dns.TypeA)
				if l := leaks(r); l != "" || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.66" {
					t.Fatalf("off-chain listed record, order %v round %d: %v", order, round, r.Answer)
				}
			}
			evs := rec.Events()
			if len(evs) != 4 || evs[0].Rule != "worm.example" || evs[1].QName != "off.hostile.test" || evs[1].Rule != "worm.example" {
				t.Fatalf("events %+v", evs)
			}
		}
	}
}

// TestUncheckableAnswersFailClosed: answers whose names cannot be read in
// full (a pointer loop, a forward pointer, a CNAME whose data runs past
// its name) are not relayed.
func TestUncheckableAnswersFailClosed(t *testing.T) {
	build := func(r *dns.Msg, name string) []byte {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Compress = false
		rr, _ := dns.NewRR(r.Question[0].Name + " 300 IN A 198.51.100.1")
		m.Answer = []dns.RR{rr}
		b, err := m.Pack()
		if err != nil {
			panic(err)
		}
		// The question ends at q; the answer's owner name starts there.
		q := headerLen
		for b[q] != 0 {
			q += int(b[q]) + 1
		}
		q += 5
		nl := q - 4 - headerLen // the owner: the question name, uncompressed
		switch name {
		case "loop": // owner: pointer to itself
			body := append([]byte(nil), b[q+nl:]...)
			b = append(b[:q], 0xc0|byte(q>>8), byte(q))
			b = append(b, body...)
		case "forward": // owner: pointer to a name placed after the record
			body := append([]byte(nil), b[q+nl:]...)
			target := q + 2 + len(body)
			b = append(b[:q], 0xc0|byte(target>>8), byte(target))
			b = append(b, body...)
			b = append(b, 4, 'w', 'o', 'r', 'm', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0)
		case "cname-garbage": // CNAME whose rdata holds more than its name
			b = b[:q]
			binary.BigEndian.PutUint16(b[6:], 1)
			b = append(b, 0xc0, headerLen, 0, 5, 0, 1, 0, 0, 1, 44, 0, 16)
			b = append(b, 4, 'w', 'o', 'r', 'm', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 1, 2)
		}
		return b
	}
	for _, kind := range []string{"loop", "forward", "cname-garbage"} {
		up := rawUpstream(t, func(r *dns.Msg) []byte { return build(r, kind) })
		s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 100}, newSource(t, testSigs), &evidencetest.Recorder{})
		for _, network := range []string{"udp", "tcp"} {
			addr := s.UDPAddr()
			if network == "tcp" {
				addr = s.TCPAddr()
			}
			q := packQuery(t, "bad.hostile.test.", dns.TypeA, false)
			resp := exchangeRaw(t, network, addr, q)
			if len(resp) < headerLen || resp[3]&0xf != dns.RcodeServerFailure || binary.BigEndian.Uint16(resp[6:]) != 0 {
				t.Errorf("%s %s: answer %x relayed", kind, network, resp)
			}
		}
		if st := s.Stats(); st.Unchecked != 2 {
			t.Errorf("%s: stats %+v", kind, st)
		}
	}
}
