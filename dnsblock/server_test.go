package dnsblock

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/internal/testutil"
	"wormsink/signatures"
)

func TestSinkholeAnswers(t *testing.T) {
	up := startUpstream(t, answerA)
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{up.addr}, TTL: 42 * time.Second, CacheSize: 100}, newSource(t, testSigs), rec)

	for _, tc := range []struct {
		net   string
		qtype uint16
		want  string // the answer's data, "" for NODATA
	}{
		{"udp", dns.TypeA, "192.0.2.66"},
		{"tcp", dns.TypeA, "192.0.2.66"},
		{"udp", dns.TypeAAAA, "2001:db8::66"},
		{"tcp", dns.TypeAAAA, "2001:db8::66"},
		{"udp", dns.TypeMX, ""},
		{"udp", dns.TypeTXT, ""},
	} {
		addr := s.UDPAddr()
		if tc.net == "tcp" {
			addr = s.TCPAddr()
		}
		r := ask(t, tc.net, addr, "WoRm.Example", tc.qtype)
		if r.Rcode != dns.RcodeSuccess || !r.Response || !r.RecursionAvailable || !r.RecursionDesired || r.Authoritative {
			t.Errorf("%s %s: header %+v", tc.net, dns.TypeToString[tc.qtype], r.MsgHdr)
		}
		if len(r.Question) != 1 || r.Question[0].Name != "WoRm.Example." || r.Question[0].Qtype != tc.qtype {
			t.Errorf("%s %s: question not echoed: %v", tc.net, dns.TypeToString[tc.qtype], r.Question)
		}
		if tc.want == "" {
			if len(r.Answer) != 0 {
				t.Errorf("%s: want NODATA, got %v", dns.TypeToString[tc.qtype], r.Answer)
			}
			continue
		}
		if len(r.Answer) != 1 {
			t.Fatalf("%s %s: answers %v", tc.net, dns.TypeToString[tc.qtype], r.Answer)
		}
		rr := r.Answer[0]
		var got string
		switch a := rr.(type) {
		case *dns.A:
			got = a.A.String()
		case *dns.AAAA:
			got = a.AAAA.String()
		}
		if got != tc.want || rr.Header().Ttl != 42 || rr.Header().Name != "WoRm.Example." {
			t.Errorf("%s %s: got %v", tc.net, dns.TypeToString[tc.qtype], rr)
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("upstream asked %d times for a listed name", n)
	}
	evs := rec.Events()
	if len(evs) != 6 {
		t.Fatalf("events: %d, want 6", len(evs))
	}
	e := evs[1]
	if e.Kind != evidence.DNSSinkhole || e.QName != "worm.example" || e.QType != "A" || e.Transport != "tcp" ||
		e.Sig != "testworm" || e.Family != "TestWorm" || e.Serial != 7 || e.Evidence != signatures.Strong || e.Rule != "" ||
		e.Host != netip.MustParseAddr("127.0.0.1") || e.Port == 0 {
		t.Errorf("event %+v", e)
	}
	if st := s.Stats(); st.Sinkholed != 6 || st.Forwarded != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestEvidenceHostPort(t *testing.T) {
	up := startUpstream(t, answerA)
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), rec)
	_, local := askFrom(t, s.UDPAddr(), "worm.example", dns.TypeA)
	evs := rec.Events()
	if len(evs) != 1 || evs[0].Host != local.Addr() || evs[0].Port != local.Port() || evs[0].Transport != "udp" {
		t.Fatalf("events %+v, client %v", evs, local)
	}

	// The same through the real evidence writer: one JSON line with the fields of docs/contract.md §3.
	var buf bytes.Buffer
	w := evidence.NewWriter(&buf, evidence.Config{Sensor: "t"})
	w.Record(evs[0])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	for _, want := range []string{`"event":"dns_sinkhole"`, `"host":"127.0.0.1"`, `"port":` + itoa(int(local.Port())), `"qname":"worm.example"`, `"qtype":"A"`, `"transport":"udp"`, `"signature":"testworm"`, `"evidence":"strong"`, `"serial":7`} {
		if !strings.Contains(line, want) {
			t.Errorf("evidence line lacks %s: %s", want, line)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestWildcardMatchesBelowOnly(t *testing.T) {
	up := startUpstream(t, answerA)
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), rec)
	for _, name := range []string{"a.wild.example", "x.y.wild.example"} {
		r := ask(t, "udp", s.UDPAddr(), name, dns.TypeA)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.66" {
			t.Errorf("%s: %v", name, r.Answer)
		}
	}
	// The apex itself is not listed: it goes upstream.
	r := ask(t, "udp", s.UDPAddr(), "wild.example", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Errorf("wild.example: %v", r.Answer)
	}
	evs := rec.Events()
	if len(evs) != 2 || evs[0].QName != "a.wild.example" || evs[0].Rule != "*.wild.example" || evs[1].QName != "x.y.wild.example" {
		t.Errorf("events %+v", evs)
	}
}

func TestNXDomainAndNoData(t *testing.T) {
	up := startUpstream(t, answerA)
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), rec)
	r := ask(t, "udp", s.UDPAddr(), "nx.example", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 {
		t.Errorf("nxdomain: %v", r)
	}
	r = ask(t, "udp", s.UDPAddr(), "nodata.example", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("nodata: %v", r)
	}
	evs := rec.Events()
	if len(evs) != 2 || evs[0].Evidence != signatures.Weak || evs[1].Evidence != signatures.Strong {
		t.Errorf("events %+v", evs)
	}
	if up.queries.Load() != 0 {
		t.Error("upstream asked")
	}
}

func TestNoSinkholeAddressForFamily(t *testing.T) {
	up := startUpstream(t, answerA)
	s := startShim(t, Config{Upstreams: []string{up.addr}, SinkholeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.9")}}, newSource(t, testSigs), &evidencetest.Recorder{})
	r := ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeAAAA)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("AAAA without IPv6 sinkhole: %v", r)
	}
}

func TestEDNSEchoed(t *testing.T) {
	up := startUpstream(t, answerA)
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), &evidencetest.Recorder{})
	r := ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, true); m.CheckingDisabled = true })
	opt := r.IsEdns0()
	if opt == nil || opt.UDPSize() != 1232 || !opt.Do() || opt.Version() != 0 || !r.CheckingDisabled {
		t.Fatalf("EDNS not kept: %v", r)
	}
	r = ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA)
	if r.IsEdns0() != nil {
		t.Error("OPT in an answer to a query without one")
	}
	// EDNS version 1: BADVERS.
	r = ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) })
	if r.Rcode != dns.RcodeBadVers {
		t.Errorf("EDNS version 1: rcode %s", dns.RcodeToString[r.Rcode])
	}
}

// rawUpstream answers every query with the same hand-made message (ID
// patched), so the test knows the exact bytes it sent.
func rawUpstream(t *testing.T, build func(r *dns.Msg) []byte) *testUpstream {
	return startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		b := build(r)
		binary.BigEndian.PutUint16(b, r.Id)
		w.Write(b)
	})
}

// exchangeRaw sends msg and returns the raw answer.
func exchangeRaw(t *testing.T, network string, addr netip.AddrPort, msg []byte) []byte {
	t.Helper()
	c, err := net.DialTimeout(network, addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if network == "tcp" {
		msg = append(binary.BigEndian.AppendUint16(nil, uint16(len(msg))), msg...)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	if network == "tcp" {
		if _, err := c.Read(buf[:2]); err != nil {
			t.Fatal(err)
		}
		n := int(binary.BigEndian.Uint16(buf))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestForwardByteForByte(t *testing.T) {
	var (
		mu   sync.Mutex
		sent []byte
	)
	up := rawUpstream(t, func(r *dns.Msg) []byte {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable, m.AuthenticatedData = true, true
		q := r.Question[0].Name
		for _, s := range []string{q + " 300 IN A 192.0.2.7", q + " 300 IN A 192.0.2.8"} {
			rr, _ := dns.NewRR(s)
			m.Answer = append(m.Answer, rr)
		}
		ns, _ := dns.NewRR("example. 3600 IN NS ns1.example.")
		glue, _ := dns.NewRR("ns1.example. 3600 IN A 192.0.2.53")
		m.Ns, m.Extra = []dns.RR{ns}, []dns.RR{glue}
		m.SetEdns0(1232, true)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e7331"})
		m.Compress = false // unusual on purpose: the shim must not repack
		b, err := m.Pack()
		if err != nil {
			panic(err)
		}
		mu.Lock()
		sent = append(sent[:0], b...)
		mu.Unlock()
		return b
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), &evidencetest.Recorder{})
	for _, network := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion(network+".Plain.Example.", dns.TypeA)
		m.SetEdns0(4096, true)
		q, _ := m.Pack()
		addr := s.UDPAddr()
		if network == "tcp" {
			addr = s.TCPAddr()
		}
		got := exchangeRaw(t, network, addr, q)
		mu.Lock()
		sent := append([]byte(nil), sent...)
		mu.Unlock()
		if binary.BigEndian.Uint16(got) != m.Id {
			t.Errorf("%s: id %d, want %d", network, binary.BigEndian.Uint16(got), m.Id)
		}
		// Over UDP the upstream was asked in random case (0x20): the
		// question comes back in the client's spelling, the rest as sent.
		copy(sent[headerLen:], q[headerLen:len(q)-11])
		if !bytes.Equal(got[2:], sent[2:]) {
			t.Errorf("%s: forwarded answer differs\n got %x\nwant %x", network, got, sent)
		}
	}
	if st := s.Stats(); st.Forwarded != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestTruncationAndTCPRetry(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if w.RemoteAddr().Network() == "udp" {
			m.Truncated = true
		} else {
			for i := range 40 {
				rr, _ := dns.NewRR(r.Question[0].Name + ` 300 IN TXT "` + strings.Repeat("x", 200) + itoa(i) + `"`)
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 100}, newSource(t, testSigs), &evidencetest.Recorder{})
	r := ask(t, "udp", s.UDPAddr(), "big.example", dns.TypeTXT)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Fatalf("UDP: want TC, got %v", r.MsgHdr)
	}
	r = ask(t, "tcp", s.TCPAddr(), "big.example", dns.TypeTXT)
	if r.Truncated || len(r.Answer) != 40 {
		t.Fatalf("TCP: %d answers, TC %v", len(r.Answer), r.Truncated)
	}
	// The big TCP answer is cached but must not be sent over UDP.
	r = ask(t, "udp", s.UDPAddr(), "big.example", dns.TypeTXT)
	if !r.Truncated {
		t.Error("UDP after TCP: want TC again")
	}
	if up.queries.Load() != 3 {
		t.Errorf("upstream queries %d, want 3", up.queries.Load())
	}
}

func TestUpstreamDown(t *testing.T) {
	const timeout = time.Second
	closed := blackhole(t) // bound and silent
	// And a port with nothing behind it: ICMP unreachable, TCP reset.
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	refused := pc.LocalAddr().String()
	pc.Close()
	s := startShim(t, Config{Upstreams: []string{closed, refused}, Timeout: timeout, AttemptTimeout: 300 * time.Millisecond}, newSource(t, testSigs), &evidencetest.Recorder{})

	// A listed name never waits for an upstream.
	start := time.Now()
	r := ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA)
	if len(r.Answer) != 1 || time.Since(start) > timeout/2 {
		t.Errorf("listed name with upstreams down: %v after %v", r.Answer, time.Since(start))
	}
	if st := s.Stats(); st.UpstreamErrors != 0 || st.Sinkholed != 1 {
		t.Errorf("listed name touched the upstreams: %+v", st)
	}
	for _, network := range []string{"udp", "tcp"} {
		addr := s.UDPAddr()
		if network == "tcp" {
			addr = s.TCPAddr()
		}
		start = time.Now()
		r = ask(t, network, addr, "unlisted.example", dns.TypeA)
		took := time.Since(start)
		if r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: rcode %s, want SERVFAIL", network, dns.RcodeToString[r.Rcode])
		}
		// The slack is for a loaded machine; a shim that waited for every
		// attempt in turn, or forever, fails it.
		if took > timeout+time.Second {
			t.Errorf("%s: SERVFAIL after %v, timeout %v", network, took, timeout)
		}
	}
	if st := s.Stats(); st.ServFail != 2 || st.UpstreamErrors < 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestFailoverRemembersHealth(t *testing.T) {
	up := startUpstream(t, answerA)
	var logBuf testutil.SyncBuffer
	s := startShimLog(t, Config{Upstreams: []string{blackhole(t), up.addr}, AttemptTimeout: 300 * time.Millisecond, HealthMemory: time.Minute}, newSource(t, testSigs), &evidencetest.Recorder{}, zerolog.New(&logBuf))
	start := time.Now()
	r := ask(t, "udp", s.UDPAddr(), "one.example", dns.TypeA)
	if len(r.Answer) != 1 || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("failover: %v after %v", r.Answer, time.Since(start))
	}
	// The dead upstream is now at the back of the line: not asked again.
	for _, name := range []string{"two.example", "three.example"} {
		r = ask(t, "udp", s.UDPAddr(), name, dns.TypeA)
		if len(r.Answer) != 1 {
			t.Fatalf("after failover: %v", r)
		}
	}
	if st := s.Stats(); st.UpstreamErrors != 1 || st.Forwarded != 3 || up.queries.Load() != 3 {
		t.Errorf("dead upstream asked again: %+v", st)
	}
	if n := strings.Count(logBuf.String(), `"event":"dns_upstream_down"`); n != 1 {
		t.Errorf("%d upstream_down lines, want 1:\n%s", n, logBuf.String())
	}
}

func TestRefusedOutsideAllow(t *testing.T) {
	up := startUpstream(t, answerA)
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{up.addr}, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, newSource(t, testSigs), rec)
	for _, name := range []string{"worm.example", "unlisted.example"} {
		r := ask(t, "udp", s.UDPAddr(), name, dns.TypeA)
		if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
			t.Errorf("udp %s: %v", name, r)
		}
		// Over TCP an outsider's connection is closed at accept.
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
		if r, _, err := c.Exchange(m, s.TCPAddr().String()); err == nil {
			t.Errorf("tcp %s: answered %v", name, r)
		}
	}
	if len(rec.Events()) != 0 || up.queries.Load() != 0 {
		t.Errorf("refused client left evidence or reached upstream")
	}
	if st := s.Stats(); st.Refused != 4 || st.TCPRejected != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestDefaultAllow(t *testing.T) {
	h := &handler{allow: DefaultAllow()}
	for a, want := range map[string]bool{
		"127.0.0.1": true, "::1": true, "10.1.2.3": true, "172.31.255.1": true, "172.32.0.1": false,
		"192.168.9.9": true, "100.127.0.1": true, "100.128.0.1": false, "fd00::1": true, "8.8.8.8": false,
		"2001:db8::1": false, "::ffff:10.0.0.1": true,
	} {
		if got := h.allowed(netip.MustParseAddr(a)); got != want {
			t.Errorf("%s: allowed %v, want %v", a, got, want)
		}
	}
}

func TestCNAMEToListedName(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		q := r.Question[0].Name
		for _, s := range []string{q + " 300 IN CNAME mid.example.", "mid.example. 300 IN CNAME Target.Example.", "target.example. 300 IN A 203.0.113.5"} {
			rr, _ := dns.NewRR(s)
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	rec := &evidencetest.Recorder{}
	s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 100}, newSource(t, testSigs), rec)
	for i := range 2 { // the second answer comes from the cache
		r := ask(t, "udp", s.UDPAddr(), "alias.example", dns.TypeA)
		if len(r.Answer) != 3 {
			t.Fatalf("round %d: answers %v", i, r.Answer)
		}
		c1, ok1 := r.Answer[0].(*dns.CNAME)
		c2, ok2 := r.Answer[1].(*dns.CNAME)
		a, ok3 := r.Answer[2].(*dns.A)
		if !ok1 || !ok2 || !ok3 || c1.Target != "mid.example." || c2.Target != "Target.Example." ||
			!strings.EqualFold(a.Hdr.Name, "target.example.") || a.A.String() != "192.0.2.66" || a.Hdr.Ttl != 60 {
			t.Fatalf("round %d: %v", i, r.Answer)
		}
	}
	evs := rec.Events()
	if len(evs) != 2 || evs[0].QName != "alias.example" || evs[0].Rule != "target.example" || evs[1].Rule != "target.example" {
		t.Errorf("events %+v", evs)
	}
	if up.queries.Load() != 1 {
		t.Errorf("upstream queries %d", up.queries.Load())
	}
	if st := s.Stats(); st.Sinkholed != 2 || st.Forwarded != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestCNAMEToNXDomainName(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 300 IN CNAME nx.example.")
		a, _ := dns.NewRR("nx.example. 300 IN A 203.0.113.5")
		m.Answer = []dns.RR{rr, a}
		w.WriteMsg(m)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), &evidencetest.Recorder{})
	r := ask(t, "tcp", s.TCPAddr(), "alias2.example", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Fatalf("%v", r)
	}
}

func TestCacheHonoursTTLAndKeys(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0].Name
		switch lq := strings.ToLower(q); {
		case strings.HasPrefix(lq, "neg."):
			m.Rcode = dns.RcodeNameError
			soa, _ := dns.NewRR("example. 900 IN SOA ns.example. h.example. 1 2 3 4 30")
			m.Ns = []dns.RR{soa}
		case strings.HasPrefix(lq, "nosoa."):
			m.Rcode = dns.RcodeNameError
		case strings.HasPrefix(lq, "zero."):
			rr, _ := dns.NewRR(q + " 0 IN A 192.0.2.3")
			m.Answer = []dns.RR{rr}
		default:
			rr, _ := dns.NewRR(q + " 300 IN A 192.0.2.3")
			m.Answer = []dns.RR{rr}
		}
		w.WriteMsg(m)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 1000}, newSource(t, testSigs), &evidencetest.Recorder{})
	addr := s.UDPAddr()
	ask(t, "udp", addr, "pos.example", dns.TypeA)
	r := ask(t, "udp", addr, "POS.example", dns.TypeA)
	if up.queries.Load() != 1 || r.Question[0].Name != "POS.example." || r.Answer[0].Header().Ttl > 300 {
		t.Fatalf("cache hit: upstream %d, %v", up.queries.Load(), r)
	}
	// DO and CD are part of the key.
	ask(t, "udp", addr, "pos.example", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, true) })
	ask(t, "udp", addr, "pos.example", dns.TypeA, func(m *dns.Msg) { m.CheckingDisabled = true })
	if up.queries.Load() != 3 {
		t.Fatalf("DO/CD: upstream queries %d, want 3", up.queries.Load())
	}
	// Negative answers: cached with an SOA (RFC 2308), not without.
	for range 2 {
		r = ask(t, "udp", addr, "neg.example", dns.TypeA)
		ask(t, "udp", addr, "nosoa.example", dns.TypeA)
		ask(t, "udp", addr, "zero.example", dns.TypeA)
	}
	if r.Rcode != dns.RcodeNameError || up.queries.Load() != 3+1+2+2 {
		t.Fatalf("negative caching: upstream queries %d, want 8 %+v", up.queries.Load(), s.Stats())
	}
	if st := s.Stats(); st.CacheHits != 2 {
		t.Errorf("cache hits %d, want 2", st.CacheHits)
	}
}

func TestCacheEntryAges(t *testing.T) {
	c := newCache(10, 1<<30, time.Hour, time.Hour)
	m := new(dns.Msg)
	m.SetQuestion("age.example.", dns.TypeA)
	q0, _ := m.Pack()
	r := new(dns.Msg)
	r.SetReply(m)
	rr, _ := dns.NewRR("age.example. 300 IN A 192.0.2.3")
	r.Answer = []dns.RR{rr}
	soa, _ := dns.NewRR("example. 100 IN SOA ns.example. h.example. 1 2 3 4 30")
	r.Ns = []dns.RR{soa}
	resp, _ := r.Pack()
	var q query
	if err := parseQuery(q0, &q, make([]byte, 256)); err != nil {
		t.Fatal(err)
	}
	var info respInfo
	if err := walkResponse(resp, q0[headerLen:q.qEnd], nil, &info, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	if info.ttl != 100 || len(info.ttlOffs) != 2 {
		t.Fatalf("info %+v", info)
	}
	key := appendKey(nil, &q)
	c.put(key, resp, &info, 0)
	e := c.get(key, int64(40*time.Second))
	if e == nil {
		t.Fatal("miss at 40s")
	}
	got := new(dns.Msg)
	if err := got.Unpack(e.appendHit(nil, &q, int64(40*time.Second))); err != nil {
		t.Fatal(err)
	}
	if got.Answer[0].Header().Ttl != 260 || got.Ns[0].Header().Ttl != 60 || got.Id != m.Id {
		t.Errorf("aged answer %v", got)
	}
	if c.get(key, int64(100*time.Second)) != nil {
		t.Error("hit after the TTL")
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCache(100, 1<<30, time.Hour, time.Hour)
	info := respInfo{ttl: 60, rcode: rcodeSuccess, ttlOffs: []int32{}}
	for i := range 1000 {
		c.put([]byte("key"+itoa(i)), make([]byte, 20), &info, 0)
	}
	if n := c.len(); n > 100+len(c.shards) || n < 50 {
		t.Errorf("cache holds %d entries, size 100", n)
	}
}

func TestMalformedQueries(t *testing.T) {
	up := startUpstream(t, answerA)
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), &evidencetest.Recorder{})
	conn, err := net.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, b := range [][]byte{
		{1, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0},                          // two questions, none there
		{1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},    // pointer loop in the question
		{1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', 'b'},             // cut label
		{1, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41}, // cut OPT
	} {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		conn.Write(b)
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%x: %v", b, err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil || m.Rcode != dns.RcodeFormatError || m.Id != 0x0102 {
			t.Errorf("%x: answer %v (%v)", b, m, err)
		}
	}
	// Too short, or an answer rather than a query: nothing comes back, and the server lives.
	conn.Write([]byte{1, 2, 3})
	conn.Write([]byte{1, 2, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1})
	r := ask(t, "udp", s.UDPAddr(), "worm.example", dns.TypeA)
	if len(r.Answer) != 1 {
		t.Fatal("server did not survive")
	}
	if st := s.Stats(); st.FormErr != 4 || st.Dropped != 2 {
		t.Errorf("stats %+v", st)
	}
	// Other opcodes: NOTIMP.
	m := new(dns.Msg)
	m.SetNotify("example.")
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err = c.Exchange(m, s.UDPAddr().String())
	if err != nil || r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("NOTIFY: %v %v", r, err)
	}
}

func TestAnswersFromTheAddressAsked(t *testing.T) {
	up := startUpstream(t, answerA)
	s := startShim(t, Config{Listen: "0.0.0.0:0", Upstreams: []string{up.addr}}, newSource(t, testSigs), &evidencetest.Recorder{})
	// dns.Client uses a connected socket: an answer from another source
	// address than 127.0.0.2 would never reach it.
	for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
		addr := netip.AddrPortFrom(netip.MustParseAddr(ip), s.UDPAddr().Port())
		for _, name := range []string{"worm.example", "fwd.example"} {
			r := ask(t, "udp", addr, name, dns.TypeA)
			if len(r.Answer) != 1 {
				t.Errorf("%s via %s: %v", name, ip, r)
			}
		}
	}
}

// TestTCPPipelining sends a slow forwarded query and then a listed one on
// one TCP connection: the listed answer must not wait for the slow one.
func TestTCPPipelining(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		<-release
		answerA(w, r)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}}, newSource(t, testSigs), &evidencetest.Recorder{})
	t.Cleanup(free) // runs before the servers' cleanups: nothing stays blocked
	c := &dns.Client{Net: "tcp"}
	conn, err := c.Dial(s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	slow, listed := new(dns.Msg), new(dns.Msg)
	slow.SetQuestion("slow.example.", dns.TypeA)
	listed.SetQuestion("worm.example.", dns.TypeA)
	for _, m := range []*dns.Msg{slow, listed} {
		if err := conn.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	first, err := conn.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	free()
	second, err := conn.ReadMsg()
	if err != nil {
		t.Fatal(err)
	}
	if first.Id != listed.Id || second.Id != slow.Id || len(second.Answer) != 1 {
		t.Errorf("answers in order %d, %d; want the listed one (%d) first", first.Id, second.Id, listed.Id)
	}
}
