package sinkhole

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/internal/tftp"
)

// proofOf waits for the evidence of the request sent from port and
// returns its proof.
func proofOf(t *testing.T, ts *testServer, port uint16) evidence.Proof {
	t.Helper()
	var p evidence.Proof
	waitFor(t, "the evidence", func() bool {
		for _, e := range ts.rec.Events() {
			if e.Port == port {
				p = e.Proof
				return true
			}
		}
		return false
	})
	return p
}

// A client that answers every probe from its own address and port, to the
// port each came from (as tftp-hpa does), proves its address: exchange,
// refused from the last round's port. One that never answers (what a
// forged source looks like from here: it never sees the probe) stays a
// datagram, refused from the first probe's port with the probe and the
// refusal together no larger than its request. So does one that answers
// only the first probe (as atftp and BusyBox, which keep to the first port
// they hear from), refused from that port, and one whose answers come from
// another port or go to the listening port.
func TestExchangeProof(t *testing.T) {
	ts := startServer(t, Config{ExchangeWait: time.Second}, nil)
	req := rrq(1, "msblast.exe", "octet")
	ack := []byte{0, tftp.OpAck, 0, 1}

	real := newClient(t, ts.addr)
	real.send(req)
	checkError(t, real.read(5*time.Second), len(req))
	if real.from == ts.addr || real.probes != DefaultExchangeRounds {
		t.Fatalf("refusal from %v after %d probes", real.from, real.probes)
	}
	if _, err := real.conn.WriteToUDPAddrPort(ack, real.from); err != nil {
		t.Fatal(err)
	}

	// A source that never answers, from another loopback address.
	silent := newClientOn(t, ts.addr, "127.0.0.23")
	silent.mute = true
	silent.send(req)
	probePort := silent.readProbe()
	refusal := silent.read(5 * time.Second)
	checkError(t, refusal, len(req)-len(probe))
	if silent.from != probePort {
		t.Errorf("silent source refused from %v, its probe came from %v", silent.from, probePort)
	}

	// A client that answers the first probe only.
	first := newClient(t, ts.addr)
	first.mute = true
	first.send(req)
	port1 := first.readProbe()
	if _, err := first.conn.WriteToUDPAddrPort(req, port1); err != nil {
		t.Fatal(err)
	}
	if port2 := first.readProbe(); port2 == port1 {
		t.Fatalf("the second probe from the first's port %v", port1)
	}
	checkError(t, first.read(5*time.Second), len(req))
	if first.from != port1 {
		t.Errorf("refused from %v, want the port it answered, %v", first.from, port1)
	}

	// Answers that prove nothing: from another port of the same address
	// (the probe's port would have to be guessed), and to the listening
	// port instead of the probe's.
	other := newClient(t, ts.addr)
	other.mute = true
	other.send(req)
	other.readProbe()
	third := newClient(t, ts.addr)
	if _, err := third.conn.WriteToUDPAddrPort(req, other.from); err != nil {
		t.Fatal(err)
	}
	other.send(ack) // to the listening port
	checkError(t, other.read(5*time.Second), len(req)-len(probe))

	want := map[uint16]evidence.Proof{real.port(): evidence.ProofExchange, silent.port(): evidence.ProofDatagram,
		first.port(): evidence.ProofDatagram, other.port(): evidence.ProofDatagram}
	for port, w := range want {
		if p := proofOf(t, ts, port); p != w {
			t.Errorf("port %d: proof %v, want %v", port, p, w)
		}
	}
	st := ts.srv.Stats()
	if st.Exchanged != 1 || st.Partial != 1 || st.Replies != 4 || st.Probes != DefaultExchangeRounds+1+2+1 || st.Stray != 2 || st.Guesses != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := len(ts.rec.Events()); n != 4 {
		t.Errorf("%d events for 4 requests", n)
	}
}

// One round is a port of about 15 bits; each further round is another, so
// a forger who got one port right (here: told it, as if he guessed) still
// has the next to guess, in its wait, and without it gets no more than a
// datagram, while the requester he forged is refused as any other.
func TestExchangeRoundsEachASecret(t *testing.T) {
	ts := startServer(t, Config{ExchangeWait: time.Second}, nil)
	req := rrq(1, "msblast.exe", "octet")
	// The victim's socket stands in for the forger's spoofed packets: it
	// answers the first probe (a lucky guess) and then knows nothing.
	victim := newClient(t, ts.addr)
	victim.mute = true
	victim.send(req)
	p1 := victim.readProbe()
	if _, err := victim.conn.WriteToUDPAddrPort(req, p1); err != nil {
		t.Fatal(err)
	}
	p2 := victim.readProbe()
	// The guesses a forger would try for the second round: the first
	// round's port again and the ports next to it.
	for _, port := range []uint16{p1.Port(), p1.Port() + 1, p1.Port() - 1} {
		if port == p2.Port() {
			continue
		}
		if _, err := victim.conn.WriteToUDPAddrPort(req, netip.AddrPortFrom(p1.Addr(), port)); err != nil {
			t.Fatal(err)
		}
	}
	checkError(t, victim.read(5*time.Second), len(req))
	if p := proofOf(t, ts, victim.port()); p != evidence.ProofDatagram {
		t.Errorf("one round won, the next missed: proof %v", p)
	}
	if st := ts.srv.Stats(); st.Exchanged != 0 || st.Partial != 1 {
		t.Errorf("stats %+v", st)
	}
}

// The fresh ports are bounded: past Exchanges, refusals leave from the
// listening port, every request is still recorded once, and sightings
// held when the server stops are recorded then.
func TestExchangeBounded(t *testing.T) {
	ts := startServer(t, Config{Exchanges: 2, ExchangeWait: time.Minute}, nil)
	req := rrq(1, "msblast.exe", "octet")
	var fromMain int
	rounds := map[uint16]bool{} // client ports that went through the rounds
	for range 5 {
		c := newClient(t, ts.addr)
		c.send(req)
		checkError(t, c.read(5*time.Second), len(req))
		if c.from == ts.addr {
			fromMain++
			if c.probes != 0 {
				t.Errorf("refused from the listening port after %d probes", c.probes)
			}
		} else {
			rounds[c.port()] = true
		}
	}
	// The counter follows the send: wait for it rather than race it.
	waitFor(t, "five replies counted", func() bool { return ts.srv.Stats().Replies == 5 })
	if st := ts.srv.Stats(); fromMain != 3 || st.ExchangeBusy != 3 || st.Replies != 5 {
		t.Fatalf("%d refusals from the listening port, stats %+v", fromMain, st)
	}
	waitFor(t, "the three unheld sightings", func() bool { return len(ts.rec.Events()) == 3 })
	if err := ts.stop(); err != nil && err != ErrServerClosed {
		t.Fatal(err)
	}
	evs := ts.rec.Events()
	if len(evs) != 5 {
		t.Fatalf("%d events for 5 requests after stop", len(evs))
	}
	for _, e := range evs {
		want := evidence.ProofDatagram
		if rounds[e.Port] {
			want = evidence.ProofExchange
		}
		if e.Proof != want || e.Host != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("event %+v, want proof %v", e, want)
		}
	}
}

// decoysOf returns the decoys' addresses: on the server's own address,
// since the test server is bound to one.
func decoysOf(t *testing.T, ts *testServer) []netip.AddrPort {
	t.Helper()
	ts.srv.mu.Lock()
	x := ts.srv.g.ex
	ts.srv.mu.Unlock()
	out := x.decoyPorts()
	for _, d := range out {
		if d.Addr() != ts.addr.Addr() {
			t.Fatalf("decoy %v beside a server on %v", d, ts.addr)
		}
	}
	return out
}

// A server bound to one address keeps its decoys on that address: what
// this host's other programs are sent, on a port a decoy holds, is none of
// the sinkhole's business. (On the wildcard, a refusal of ours to a
// requester on this host whose port a decoy had since taken came back as
// a guess and withheld every exchange of the hold.)
func TestDecoysOnTheServersAddress(t *testing.T) {
	ts := startServer(t, Config{ExchangeWait: time.Second, GuessHold: time.Minute}, nil)
	req := rrq(1, "msblast.exe", "octet")
	c := newClient(t, ts.addr)
	c.send(req)
	checkError(t, c.read(5*time.Second), len(req))
	d := decoysOf(t, ts)[0]
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// A TFTP ERROR to another address of this host on the decoy's port,
	// then a guess at the decoy itself: were the decoy on the wildcard,
	// both would land in its queue, in that order.
	refusal := []byte{0, tftp.OpError, 0, 2, 'x', 0}
	if _, err := other.WriteToUDPAddrPort(refusal, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), d.Port())); err != nil {
		t.Fatal(err)
	}
	if _, err := other.WriteToUDPAddrPort(refusal, d); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the guess at the decoy", func() bool { return ts.srv.Stats().Guesses >= 1 })
	if g := ts.srv.Stats().Guesses; g != 1 {
		t.Errorf("%d guesses, want only the one sent to the server's address", g)
	}
}

// A guess anywhere withholds exchange: the requester's own datagram to a
// decoy, or another address's datagram on a refusal's port, even when the
// requester then follows up exactly as a real client does. The decoys are
// fresh ports on the address the refusals leave from.
func TestGuessWithholds(t *testing.T) {
	for _, how := range []string{"decoy", "other requester's port"} {
		t.Run(how, func(t *testing.T) {
			ts := startServer(t, Config{ExchangeWait: time.Second, GuessHold: time.Minute}, nil)
			req := rrq(1, "msblast.exe", "octet")
			ack := []byte{0, tftp.OpAck, 0, 1}
			c := newClient(t, ts.addr)
			c.send(req)
			checkError(t, c.read(5*time.Second), len(req))
			decoys := decoysOf(t, ts)
			if len(decoys) != DefaultDecoys {
				t.Fatalf("%d decoys, want %d", len(decoys), DefaultDecoys)
			}
			for _, d := range decoys {
				if d.Addr() != c.from.Addr() || d.Port() == c.from.Port() || d.Port() == ts.addr.Port() {
					t.Fatalf("decoy %v beside refusal port %v", d, c.from)
				}
			}
			switch how {
			case "decoy":
				if _, err := c.conn.WriteToUDPAddrPort(ack, decoys[0]); err != nil {
					t.Fatal(err)
				}
			default:
				other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
				if err != nil {
					t.Fatal(err)
				}
				defer other.Close()
				if _, err := other.WriteToUDPAddrPort(ack, c.from); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "the guess", func() bool { return ts.srv.Stats().Guesses == 1 })
			if _, err := c.conn.WriteToUDPAddrPort(ack, c.from); err != nil {
				t.Fatal(err)
			}
			if p := proofOf(t, ts, c.port()); p != evidence.ProofDatagram {
				t.Errorf("proof %v after a guess", p)
			}
			if st := ts.srv.Stats(); st.Exchanged != 1 || st.Withheld != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// The exchanges never take more than their share of file descriptors
// and of the ephemeral port range.
func TestExchangeBudget(t *testing.T) {
	if got := budget(128, 64); got > 128 || got < 1 {
		t.Fatalf("budget(128, 64) = %d", got)
	}
	lo, hi, ok := ephemeralRange()
	if !ok {
		t.Fatal("no ephemeral port range")
	}
	if got := budget(1<<20, 64); got+64 > (hi-lo+1)/8 {
		t.Fatalf("budget(1<<20, 64) = %d exchanges for a range of %d ports", got, hi-lo+1)
	}
	if fds, ok := fdLimit(); ok {
		if got := budget(1<<20, 64); got+64 > fds/4 {
			t.Fatalf("budget = %d exchanges for %d file descriptors", got, fds)
		}
	}
}

// Only a TFTP-shaped datagram can be a follow-up, so only such a datagram
// on a decoy is a guess: a late answer of another protocol to a port a
// decoy now holds is stray and withholds nothing.
func TestDecoyIgnoresOtherProtocols(t *testing.T) {
	ts := startServer(t, Config{ExchangeWait: time.Second, GuessHold: time.Minute}, nil)
	req := rrq(1, "msblast.exe", "octet")
	c := newClient(t, ts.addr)
	c.send(req)
	checkError(t, c.read(5*time.Second), len(req))
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	dnsAnswer := []byte("\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00")
	for _, d := range decoysOf(t, ts)[:8] {
		if _, err := other.WriteToUDPAddrPort(dnsAnswer, d); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the strays", func() bool { return ts.srv.Stats().Stray >= 8 })
	if _, err := c.conn.WriteToUDPAddrPort([]byte{0, tftp.OpAck, 0, 1}, c.from); err != nil {
		t.Fatal(err)
	}
	if p := proofOf(t, ts, c.port()); p != evidence.ProofExchange {
		t.Errorf("proof %v after non-TFTP datagrams on decoys", p)
	}
	if st := ts.srv.Stats(); st.Guesses != 0 || st.Withheld != 0 {
		t.Errorf("stats %+v", st)
	}
}
