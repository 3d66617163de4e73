//go:build linux

package sinkhole

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/internal/testutil"
	"wormsink/internal/tftp"
)

// inOwnNetns runs the calling test again inside a network namespace of its
// own (unshare -n, loopback up) and reports whether the caller is that
// run. A spray of every ephemeral port must not land on the sockets of
// other tests running on this machine.
func inOwnNetns(t *testing.T) bool {
	t.Helper()
	const env = "WORMSINK_TEST_NETNS"
	if os.Getenv(env) == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root for a network namespace (make test runs as root)")
	}
	unshare, ip := testutil.Need(t, "unshare"), testutil.Need(t, "ip")
	cmd := exec.Command(unshare, "-n", "sh", "-c", `"$0" link set lo up && exec "$@"`,
		ip, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s in its own network namespace: %v\n%s", t.Name(), err, out)
	}
	t.Logf("in its own network namespace:\n%s", out)
	return false
}

// forge sends a request as if from victim, an address nobody here reads:
// the socket is closed before the refusal can matter, and the sprays that
// follow come from a socket that never reads either.
func forge(t *testing.T, victim, srv netip.AddrPort, p []byte) {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(victim))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort(p, srv); err != nil {
		t.Fatal(err)
	}
}

// spray sends one 4-byte ACK from victim to every port of lo..hi on dst.
func spray(t *testing.T, victim netip.AddrPort, dst netip.Addr, lo, hi int) {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(victim))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ack := []byte{0, tftp.OpAck, 0, 1}
	for p := lo; p <= hi; p++ {
		// Errors are ICMP port unreachable coming back from closed ports
		// the loopback reports on the next send: the forger ignores them.
		c.WriteToUDPAddrPort(ack, netip.AddrPortFrom(dst, uint16(p)))
	}
}

// TestSprayForger: six forged requests for a worm, each from an address
// nobody holds, each followed within the wait by one datagram from that
// address and port to every port of the ephemeral range. The refusal's
// fresh port is among them, so without decoys every victim earned proof
// exchange. Now none may get more than datagram, the guesses are counted,
// and a real client that follows up later, once the hold is over, still
// gets exchange.
func TestSprayForger(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	lo, hi, ok := ephemeralRange()
	if !ok {
		t.Fatal("no ephemeral port range")
	}
	const hold = 3 * time.Second
	ts := startServer(t, Config{SourceRate: -1, TotalRate: -1, ExchangeWait: 5 * time.Second, GuessHold: hold}, nil)
	req := rrq(1, "msblast.exe", "octet")
	var victims []netip.AddrPort
	for i := range 6 {
		v := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 66, 0, byte(1 + i)}), uint16(40000+i))
		victims = append(victims, v)
		forge(t, v, ts.addr, req)
	}
	waitFor(t, "six refusals", func() bool { return ts.srv.Stats().Replies == 6 })
	t0 := time.Now()
	for _, v := range victims {
		spray(t, v, ts.addr.Addr(), lo, hi)
	}
	t.Logf("sprayed %d ports from each of %d victims in %v", hi-lo+1, len(victims), time.Since(t0))
	waitFor(t, "the six sightings", func() bool { return len(ts.rec.Events()) == 6 })
	for _, e := range ts.rec.Events() {
		if e.Proof != evidence.ProofDatagram {
			t.Errorf("forged victim %v:%d got proof %v", e.Host, e.Port, e.Proof)
		}
	}
	st := ts.srv.Stats()
	t.Logf("stats: exchanged %d, withheld %d, guesses %d", st.Exchanged, st.Withheld, st.Guesses)
	if st.Guesses == 0 || st.Withheld != st.Exchanged {
		t.Errorf("stats %+v: want guesses counted and every follow-up withheld", st)
	}

	// Once the hold has passed, a real client is believed again.
	time.Sleep(hold + 100*time.Millisecond) // the hold is wall time by design: nothing to poll
	real := newClient(t, ts.addr)
	real.send(req)
	checkError(t, real.read(5*time.Second), len(req))
	if _, err := real.conn.WriteToUDPAddrPort([]byte{0, tftp.OpAck, 0, 1}, real.from); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follow-up", func() bool { return ts.srv.Stats().Exchanged > st.Exchanged })
	if err := ts.stop(); err != nil && err != ErrServerClosed {
		t.Fatal(err)
	}
	if p := proofOf(t, ts, real.port()); p != evidence.ProofExchange {
		t.Errorf("real client after the hold: proof %v", p)
	}
	fmt.Fprintln(os.Stderr, "spray forger: ok")
}

// TestGuessingForger: forty forged requests for a worm, each from an
// address nobody holds, each followed by 2,500 datagrams from that address
// and port to random ports of the ephemeral range (100,000 in all), sent
// while the rounds wait. A guess lands on a round's port about once in
// 28,000 tries, so the forgers win some first rounds at most; the later
// rounds' ports are new secrets. None may get more than datagram, and the
// guesses that land on decoys are counted.
func TestGuessingForger(t *testing.T) {
	if !inOwnNetns(t) {
		return
	}
	lo, hi, ok := ephemeralRange()
	if !ok {
		t.Fatal("no ephemeral port range")
	}
	ts := startServer(t, Config{SourceRate: -1, TotalRate: -1, ExchangeWait: 10 * time.Second}, nil)
	req := rrq(1, "msblast.exe", "octet")
	const victims, guesses = 40, 2500
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := range victims {
		v := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 67, 0, byte(1 + i)}), uint16(40000+i))
		forge(t, v, ts.addr, req)
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(v))
		if err != nil {
			t.Fatal(err)
		}
		for range guesses {
			// The forger's best guess at an answer: the request again (to
			// any port but the listening one, where it is a new request).
			port := uint16(lo + rng.IntN(hi-lo+1))
			if port == ts.addr.Port() {
				continue
			}
			c.WriteToUDPAddrPort(req, netip.AddrPortFrom(ts.addr.Addr(), port))
		}
		c.Close()
	}
	if err := ts.stop(); err != nil && err != ErrServerClosed {
		t.Fatal(err)
	}
	evs := ts.rec.Events()
	if len(evs) != victims {
		t.Fatalf("%d sightings for %d forged requests", len(evs), victims)
	}
	for _, e := range evs {
		if e.Proof != evidence.ProofDatagram {
			t.Errorf("forged victim %v:%d got proof %v", e.Host, e.Port, e.Proof)
		}
	}
	st := ts.srv.Stats()
	t.Logf("stats: probes %d, partial %d, exchanged %d, guesses %d", st.Probes, st.Partial, st.Exchanged, st.Guesses)
	if st.Exchanged != 0 || st.Guesses == 0 {
		t.Errorf("stats %+v: want no requester through every round, and the guesses on decoys counted", st)
	}
	fmt.Fprintln(os.Stderr, "guessing forger: ok")
}
