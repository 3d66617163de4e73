package dnsblock

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"wormsink/internal/evidencetest"
	"wormsink/internal/testutil"
)

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(src string, addr netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr.String())
}

// tcpQuery writes one query on c (a TCP stream) and reads one answer.
func tcpQuery(c net.Conn, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	dc := &dns.Conn{Conn: c}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := dc.WriteMsg(m); err != nil {
		return nil, err
	}
	return dc.ReadMsg()
}

// TestTCPOutsidersCannotHoldSlots is defect 3: 2,000 connections held open
// by addresses outside --allow (127.0.0.2 and up; only 127.0.0.1 allowed)
// are closed at accept, so the allowed client's TCP queries go through.
func TestTCPOutsidersCannotHoldSlots(t *testing.T) {
	ub := startUnbound(t)
	s := startShim(t, Config{Upstreams: []string{ub}, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		newSource(t, testSigs), &evidencetest.Recorder{})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 2000 {
		c, err := dialFrom(fmt.Sprintf("127.0.%d.%d", 1+i/200, 2+i%200), s.TCPAddr())
		if err != nil {
			continue // reset before connect returned: refused, as it should be
		}
		held = append(held, c)
	}
	// Every outsider's connection is refused by the shim, counted.
	for deadline := time.Now().Add(20 * time.Second); s.Stats().TCPRejected < 2000; {
		if time.Now().After(deadline) {
			t.Fatalf("outsiders rejected: %d of 2000", s.Stats().TCPRejected)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := range 20 {
		c, err := dialFrom("127.0.0.1", s.TCPAddr())
		if err != nil {
			t.Fatal(err)
		}
		r, err := tcpQuery(c, "www.e2e.test", dns.TypeA)
		c.Close()
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("allowed client, query %d: %v %v", i, r, err)
		}
	}
	// An outsider's connection reads nothing and ends at once.
	for _, c := range held[:min(len(held), 50)] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("outsider's connection still open")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("outsider's connection held open")
		}
	}
}

// TestTCPEvictsOldestIdle: when every TCP slot is taken, the connection
// idle the longest is closed for the new one (RFC 7766 §6.2), and one
// client over its own cap evicts only its own connections.
func TestTCPEvictsOldestIdle(t *testing.T) {
	ub := startUnbound(t)
	// TCPIdle is long enough that no connection ends idle while the test
	// runs on a loaded machine, which would let a new one in without an
	// eviction.
	s := startShim(t, Config{Upstreams: []string{ub}, MaxTCPConns: 4, MaxTCPPerClient: 3, TCPIdle: 10 * time.Second}, newSource(t, testSigs), &evidencetest.Recorder{})
	var conns []net.Conn
	for i := range 4 {
		src := "127.0.0.1"
		if i == 3 {
			src = "127.0.0.2"
		}
		c, err := dialFrom(src, s.TCPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := tcpQuery(c, "www.e2e.test", dns.TypeA); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	// conns[0]'s query went upstream; its forward counts as in progress
	// (not idle) until its goroutine ends, a moment after the answer
	// reached the client. A loaded run dialled the next connection in that
	// moment, and conns[1] went instead.
	testutil.WaitFor(t, 10*time.Second, "no query in progress", func() bool {
		s.conns.mu.Lock()
		defer s.conns.mu.Unlock()
		for c := range s.conns.all {
			if c.busy.Load() > 0 {
				return false
			}
		}
		return true
	})
	// 127.0.0.1 is at its cap of 3: its own oldest idle connection
	// (conns[0]) goes for a new one.
	var c net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; {
		nc, err := dialFrom("127.0.0.1", s.TCPAddr())
		if err == nil {
			if r, err := tcpQuery(nc, "www.e2e.test", dns.TypeA); err == nil && len(r.Answer) == 1 {
				c = nc
				break
			}
			nc.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection admitted by evicting an idle one")
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer c.Close()
	if _, err := tcpQuery(conns[0], "www.e2e.test", dns.TypeA); err == nil {
		t.Error("oldest idle connection still served")
	}
	if r, err := tcpQuery(conns[3], "www.e2e.test", dns.TypeA); err != nil || len(r.Answer) != 1 {
		t.Errorf("another client's connection was evicted: %v", err)
	}
	if st := s.Stats(); st.TCPEvicted != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestTCPFloodBoundedFDs is defect 4: 1,000 clients (on 25 addresses)
// each pipelining 16 queries for names not cached keep the shim, running
// in its own process with default settings, under 1,024 file descriptors,
// with unbound and with BIND behind it.
func TestTCPFloodBoundedFDs(t *testing.T) {
	for _, up := range []struct{ name, zone string }{{"unbound", "e2e.test"}, {"bind", "example"}} {
		t.Run(up.name, func(t *testing.T) {
			var addr string
			if up.name == "bind" {
				addr = startBIND(t, hostileZone)
			} else {
				addr = startUnbound(t)
			}
			tcpFlood(t, addr, up.zone)
		})
	}
}

// tcpFlood is TestTCPFloodBoundedFDs against one upstream serving zone.
func tcpFlood(t *testing.T, upstream, zone string) {
	ch := startChild(t, upstream, "127.0.0.0/8")
	var (
		wg       sync.WaitGroup
		answered atomic.Int64
		maxFDs   atomic.Int64
		stop     = make(chan struct{})
	)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int64(ch.fds(t)); n > maxFDs.Load() {
				maxFDs.Store(n)
			}
			time.Sleep(2 * time.Millisecond) // sampling interval, not a wait for an event
		}
	}()
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialFrom(fmt.Sprintf("127.0.3.%d", 1+i%25), ch.addr)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			var out []byte
			for j := range 16 {
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("n%d-%d.%s.", i, j, zone), dns.TypeA)
				b, _ := m.Pack()
				out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
				out = append(out, b...)
			}
			if _, err := c.Write(out); err != nil {
				return
			}
			r := bufio.NewReader(c)
			for range 16 {
				var l [2]byte
				if _, err := io.ReadFull(r, l[:]); err != nil {
					return
				}
				if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint16(l[:]))); err != nil {
					return
				}
				answered.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	t.Logf("answered %d of 16000 pipelined queries; shim peak fds %d", answered.Load(), maxFDs.Load())
	if maxFDs.Load() >= 1024 {
		t.Errorf("shim held %d file descriptors", maxFDs.Load())
	}
	if answered.Load() < 4000 {
		t.Errorf("only %d of 16000 answered", answered.Load())
	}
	// The connections are closed once their last answers are written.
	for deadline := time.Now().Add(20 * time.Second); ch.fds(t) > 64; {
		if time.Now().After(deadline) {
			t.Fatalf("%d fds after the flood", ch.fds(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// established counts the TCP connections in state ESTABLISHED whose local
// port is port, from the kernel's table (of this thread's namespace: the
// test's own).
func established(t *testing.T, port uint16) int {
	b, err := os.ReadFile("/proc/thread-self/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		_, p, _ := strings.Cut(f[1], ":")
		if v, _ := strconv.ParseUint(p, 16, 16); uint16(v) == port && f[3] == "01" {
			n++
		}
	}
	return n
}

// TestStaleUpstreamTCPRetried is defect 5: connections the upstream closed
// while they sat idle in the pool (unbound with a 300 ms tcp-idle-timeout
// stands for the default 30 s; the shim's own aging is set past it so the
// stale connections are really met) cost no SERVFAIL.
func TestStaleUpstreamTCPRetried(t *testing.T) {
	ub := startUnboundWith(t, "  tcp-idle-timeout: 300\n")
	upPort := netip.MustParseAddrPort(ub).Port()
	s := startShim(t, Config{Upstreams: []string{ub}, UpstreamTCPIdle: time.Hour}, newSource(t, testSigs), &evidencetest.Recorder{})
	for round := range 3 {
		var wg sync.WaitGroup
		var fails atomic.Int64
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := ask(t, "tcp", s.TCPAddr(), fmt.Sprintf("r%d-%d.e2e.test", round, i), dns.TypeA)
				if r.Rcode == dns.RcodeServerFailure {
					fails.Add(1)
				}
			}()
		}
		wg.Wait()
		if fails.Load() != 0 {
			t.Errorf("round %d: %d of 8 SERVFAIL", round, fails.Load())
		}
		// Wait until unbound has closed every connection from the shim.
		for deadline := time.Now().Add(20 * time.Second); established(t, upPort) > 0; {
			if time.Now().After(deadline) {
				t.Fatal("unbound kept its TCP connections")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if st := s.Stats(); st.ServFail != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestUpstreamRestartTCP is defect 5's other half: after the upstream
// restarts, every pooled connection is dead; TCP forwards after it get no
// SERVFAIL (the shim's aging is set long, so it is the retry that counts).
func TestUpstreamRestartTCP(t *testing.T) {
	ub, stop := startUnboundOn(t, "", 0)
	s := startShim(t, Config{Upstreams: []string{ub}, UpstreamTCPIdle: time.Hour}, newSource(t, testSigs), &evidencetest.Recorder{})
	round := func(n int) {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if r := ask(t, "tcp", s.TCPAddr(), fmt.Sprintf("x%d-%d.e2e.test", n, i), dns.TypeA); r.Rcode == dns.RcodeServerFailure {
					t.Errorf("round %d: SERVFAIL", n)
				}
			}()
		}
		wg.Wait()
	}
	round(0)
	stop()
	port := int(netip.MustParseAddrPort(ub).Port())
	startUnboundOn(t, "", port)
	round(1)
	if st := s.Stats(); st.ServFail != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestOneClientCannotStarveOthers is defect 7: clients flooding with
// names whose upstream answer is slow cannot take the forwarding capacity
// from another client: one address holds at most its share, and once all
// slots are taken the oldest slow query gives way to a new one.
func TestOneClientCannotStarveOthers(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var slow atomic.Int64 // slow queries that reached the upstream
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if strings.HasPrefix(strings.ToLower(r.Question[0].Name), "slow") {
			slow.Add(1)
			<-release
		}
		answerA(w, r)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}, MaxInflight: 200, Timeout: 10 * time.Second, AttemptTimeout: 10 * time.Second},
		newSource(t, testSigs), &evidencetest.Recorder{})
	flood := func(src string, n int) {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(s.UDPAddr()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := range n {
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("slow%d.%s.example.", i, strings.ReplaceAll(src, ".", "-")), dns.TypeA)
			b, _ := m.Pack()
			c.Write(b)
		}
	}
	// One address alone: held to its share (200/8 = 25).
	flood("127.0.0.2", 1000)
	for deadline := time.Now().Add(10 * time.Second); slow.Load() < 25; {
		if time.Now().After(deadline) {
			t.Fatalf("flood not in progress: %d", slow.Load())
		}
		time.Sleep(time.Millisecond)
	}
	// The victim asks as a stub does, again after a second without an
	// answer: its first datagram may meet a receive buffer the flood's
	// burst filled (the kernel's drop, not the shim's). What it must get is
	// an answer while the flood holds its share.
	{
		c := &dns.Client{Timeout: time.Second}
		m := new(dns.Msg)
		m.SetQuestion("fast1.example.", dns.TypeA)
		var r *dns.Msg
		var err error
		for try := 0; try < 5 && r == nil; try++ {
			r, _, err = c.Exchange(m, s.UDPAddr().String())
		}
		if r == nil || len(r.Answer) != 1 {
			t.Fatalf("victim: %v %v", r, err)
		}
	}
	// Sixteen addresses fill every slot; the victim's query takes the
	// place of the oldest slow one once it is older than the jostle time.
	// One address at a time, each waited for: sixteen bursts back to back
	// overflow the socket's receive buffer under the race detector, and
	// the kernel, not the shim, would drop whole clients' floods.
	for i := range 16 {
		flood(fmt.Sprintf("127.0.0.%d", 3+i), 100)
		want := min(int64(25*(i+2)), 200)
		for deadline := time.Now().Add(10 * time.Second); slow.Load() < want; {
			if time.Now().After(deadline) {
				t.Fatalf("slots not filled after client %d: %d, want %d", i, slow.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if n := s.h.lim.inProgress(); n != 200 {
		t.Fatalf("%d forwards in progress, want all 200 slots", n)
	}
	// Like any stub, the victim asks again when its first try goes
	// unanswered (it may come before the oldest slow query is old enough).
	c := &dns.Client{Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion("fast2.example.", dns.TypeA)
	var r *dns.Msg
	for try := 0; try < 3 && r == nil; try++ {
		r, _, _ = c.Exchange(m, s.UDPAddr().String())
	}
	if r == nil || len(r.Answer) != 1 {
		t.Fatalf("victim with every slot taken: %v", r)
	}
	// The jostled query's own goroutine counts it when it sees its context
	// end, which may be after the victim has its answer: wait for it.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		st := s.Stats()
		if st.ClientLimited != 0 && st.Jostled != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want client-limited and jostled forwards", st)
		}
	}
}

// TestCacheByteBudget is defect 6: 5,000 distinct 60 KB answers asked for
// over TCP leave the shim (own process, default flags) under 200 MB RSS,
// its cache within --cache-bytes' default.
func TestCacheByteBudget(t *testing.T) {
	txt := make([]string, 0, 240)
	for range 240 {
		txt = append(txt, strings.Repeat("z", 250))
	}
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 3600}, Txt: txt}}
		w.WriteMsg(m)
	})
	ch := startChild(t, up.addr, "127.0.0.0/8")
	var wg sync.WaitGroup
	var got atomic.Int64
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &dns.Client{Net: "tcp", Timeout: 10 * time.Second}
			for i := range next {
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("big%d.example.", i), dns.TypeTXT)
				r, _, err := c.Exchange(m, ch.addr.String())
				if err == nil && len(r.Answer) == 1 {
					got.Add(1)
				}
			}
		}()
	}
	for i := range 5000 {
		next <- i
	}
	close(next)
	wg.Wait()
	now, peak := ch.rss(t)
	t.Logf("%d answers of ~60 KB; shim RSS %d MB, peak %d MB", got.Load(), now>>20, peak>>20)
	if got.Load() < 4900 {
		t.Errorf("only %d of 5000 answered", got.Load())
	}
	if peak >= 200<<20 {
		t.Errorf("shim peak RSS %d MB", peak>>20)
	}
}

// TestNoDataCappedAsNegative is defect 8: a NODATA answer with an SOA is
// a negative answer and is cached no longer than MaxNegativeTTL (1 h),
// its TTLs capped alike.
func TestNoDataCappedAsNegative(t *testing.T) {
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		soa, _ := dns.NewRR("example. 86400 IN SOA ns.example. h.example. 1 2 3 4 86400")
		m.Ns = []dns.RR{soa}
		w.WriteMsg(m)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 1000}, newSource(t, testSigs), &evidencetest.Recorder{})
	ask(t, "udp", s.UDPAddr(), "nodata.e2e.example", dns.TypeAAAA)
	r := ask(t, "udp", s.UDPAddr(), "nodata.e2e.example", dns.TypeAAAA)
	if up.queries.Load() != 1 || len(r.Ns) != 1 || r.Ns[0].Header().Ttl > 3600 {
		t.Fatalf("cached NODATA: upstream %d, %v", up.queries.Load(), r)
	}
	var q query
	msg := packQuery(t, "nodata.e2e.example.", dns.TypeAAAA, false)
	if err := parseQuery(msg, &q, make([]byte, 256)); err != nil {
		t.Fatal(err)
	}
	key := appendKey(nil, &q)
	c := s.h.cache
	if e := c.get(key, c.now()); e == nil || e.expires-e.stored > int64(time.Hour) {
		t.Fatalf("NODATA entry lives %v", time.Duration(e.expires-e.stored))
	}
}

// TestICMPUnreachableFailsOver is defect 9's last part: an upstream whose
// port answers with ICMP port unreachable is given up at once, not after
// its attempt timeout (5 s here).
func TestICMPUnreachableFailsOver(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close() // nothing listens there now: the kernel answers with ICMP
	ub := startUnbound(t)
	s := startShim(t, Config{Upstreams: []string{closed, ub}, AttemptTimeout: 5 * time.Second, Timeout: 10 * time.Second},
		newSource(t, testSigs), &evidencetest.Recorder{})
	start := time.Now()
	r := ask(t, "udp", s.UDPAddr(), "www.e2e.test", dns.TypeA)
	took := time.Since(start)
	if len(r.Answer) != 1 || took > 2500*time.Millisecond {
		t.Errorf("answer after %v: %v", took, r)
	}
	if st := s.Stats(); st.UpstreamErrors != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestUpstreamTCPAgedOut: a pooled upstream connection idle for longer
// than UpstreamTCPIdle is closed by the shim before it is reused, so with
// the defaults (5 s against unbound's 30 s) the resolver's own idle close
// is never met; the next query dials afresh and is answered.
func TestUpstreamTCPAgedOut(t *testing.T) {
	ub := startUnbound(t)
	s := startShim(t, Config{Upstreams: []string{ub}, UpstreamTCPIdle: 200 * time.Millisecond}, newSource(t, testSigs), &evidencetest.Recorder{})
	pool := &s.h.ups[0].pool
	if r := ask(t, "tcp", s.TCPAddr(), "www.e2e.test", dns.TypeA); len(r.Answer) != 1 {
		t.Fatalf("%v", r)
	}
	if pool.live() != 1 || pool.dials.Load() != 1 {
		t.Fatalf("pool: %d live, %d dials", pool.live(), pool.dials.Load())
	}
	// The connection ages out of the pool after 200 ms idle.
	for deadline := time.Now().Add(10 * time.Second); pool.live() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("idle upstream connection never aged out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := ask(t, "tcp", s.TCPAddr(), "www.e2e.test", dns.TypeAAAA); len(r.Answer) != 1 {
		t.Fatalf("%v", r)
	}
	if pool.dials.Load() != 2 || s.Stats().ServFail != 0 {
		t.Errorf("dials %d, stats %+v", pool.dials.Load(), s.Stats())
	}
}

// TestIdenticalQueriesMerged is part of defect 4: the same question asked
// by 50 clients while the first is still with the upstream costs the
// upstream one query; every client gets its answer.
func TestIdenticalQueriesMerged(t *testing.T) {
	release := make(chan struct{})
	up := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) {
		<-release
		answerA(w, r)
	})
	s := startShim(t, Config{Upstreams: []string{up.addr}, Timeout: 10 * time.Second, AttemptTimeout: 10 * time.Second},
		newSource(t, testSigs), &evidencetest.Recorder{})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			network := "udp"
			if i%2 == 1 {
				network = "tcp"
			}
			addr := s.UDPAddr()
			if network == "tcp" {
				addr = s.TCPAddr()
			}
			if r := ask(t, network, addr, "Same.Example", dns.TypeA); len(r.Answer) != 1 || r.Question[0].Name != "Same.Example." {
				t.Errorf("client %d: %v", i, r)
			}
		}()
	}
	// One leader per transport; the other 48 wait for its answer.
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Merged < 48; {
		if time.Now().After(deadline) {
			t.Fatalf("merged %d", s.Stats().Merged)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := up.queries.Load(); n != 2 {
		t.Errorf("upstream asked %d times", n)
	}
}

// TestCacheBytesBounded: the byte budget holds whatever the entry limit
// allows; an answer larger than the budget is not cached at all.
func TestCacheBytesBounded(t *testing.T) {
	c := newCache(100_000, 4<<20, time.Hour, time.Hour)
	info := respInfo{ttl: 60, rcode: rcodeSuccess, ttlOffs: []int32{}}
	for i := range 2000 {
		c.put([]byte("key"+itoa(i)), make([]byte, 60_000), &info, 0)
	}
	if n := c.size(); n > 4<<20 || n < 2<<20 {
		t.Errorf("cache holds %d bytes of answers, budget %d", n, 4<<20)
	}
	if n := c.len(); n > 4<<20/60_000 {
		t.Errorf("%d entries of 60 KB in 4 MiB", n)
	}
	small := newCache(100, 100_000, time.Hour, time.Hour) // one shard of 100,000 bytes
	small.put([]byte("huge"), make([]byte, 120_000), &info, 0)
	if small.get([]byte("huge"), 0) != nil || small.size() != 0 {
		t.Error("an answer over the budget was cached")
	}
}
