package wire

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

var (
	replayOut     = flag.String("replay-out", "", "write the live-capture replay here (scripts/perf-capture.sh)")
	replayPackets = flag.Int("replay-packets", 400_000, "packets in the replay")
	replayVLAN    = flag.Bool("replay-vlan", false, "tag every frame of the replay: 802.1Q, every third QinQ")
)

// writeReplay writes n packets of mirror-port traffic for live capture
// tests: 40 % IPv6 TCP, the rest IPv4 TCP and UDP (web, DNS, QUIC, NTP),
// many flows, and one worm request (msblast.exe over TFTP) in 10,000, each
// from its own host: over IPv4, every fourth over IPv6 behind a hop-by-hop
// and a destination-options header, every tenth in IPv4 fragments and
// every tenth (shifted) in IPv6 fragments. With vlan every frame carries
// an 802.1Q tag, every third two (802.1ad outer, 802.1Q inner). It returns
// the worm requests' source addresses.
func writeReplay(t testing.TB, path string, n int, vlan bool) []netip.Addr {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(15, 15))
	pad := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	tcp := func(dport uint16, n int) []byte {
		h := tcpRaw(dport, pad(n))
		h[13] = 0x10 // ACK
		if n > 0 {
			h[13] = 0x18
		}
		return h
	}
	// Templates: an IP packet (no link layer) and where its source
	// address and source port are, so each packet becomes its own flow.
	type tmpl struct {
		ip        []byte
		v6        bool
		weight    int
		addr, prt int
	}
	tmpls := []tmpl{
		{ip: ip6Raw(nil, protoTCP, tcp(443, 1380)), v6: true, weight: 16},
		{ip: ip6Raw(nil, protoTCP, tcp(443, 0)), v6: true, weight: 14},
		{ip: ip6Raw(nil, protoTCP, tcp(80, 700)), v6: true, weight: 6},
		{ip: ip6Raw(nil, protoTCP, tcp(22, 90)), v6: true, weight: 4},
		{ip: ip4Raw(protoTCP, tcp(443, 1380)), weight: 14},
		{ip: ip4Raw(protoTCP, tcp(443, 0)), weight: 12},
		{ip: ip4Raw(protoTCP, tcp(80, 500)), weight: 6},
		{ip: ip4Raw(protoTCP, tcp(25, 200)), weight: 3},
		{ip: ip4Raw(protoUDP, udpBytes(t, 5353, 53, pad(40))), weight: 8},
		{ip: ip4Raw(protoUDP, udpBytes(t, 50000, 443, pad(1200))), weight: 12},
		{ip: ip4Raw(protoUDP, udpBytes(t, 123, 123, pad(48))), weight: 5},
	}
	total := 0
	for i := range tmpls {
		total += tmpls[i].weight
		if tmpls[i].v6 {
			tmpls[i].addr, tmpls[i].prt = 8, 40
		} else {
			tmpls[i].addr, tmpls[i].prt = 12, 20
		}
	}
	ipv4sum := func(h []byte) {
		h[10], h[11] = 0, 0
		var s uint32
		for i := 0; i < 20; i += 2 {
			s += uint32(binary.BigEndian.Uint16(h[i:]))
		}
		for s > 0xffff {
			s = s&0xffff + s>>16
		}
		binary.BigEndian.PutUint16(h[10:], ^uint16(s))
	}
	frame := func(ip []byte, v6 bool, k int) []byte {
		et := uint16(0x0800)
		if v6 {
			et = 0x86dd
		}
		var tags []uint16
		if vlan {
			tags = []uint16{0x8100}
			if k%3 == 0 {
				tags = []uint16{0x88a8, 0x8100}
			}
		}
		fr := ethRaw(tags, et, ip)
		for i := range tags { // vary the VLAN ids
			binary.BigEndian.PutUint16(fr[14+4*i:], uint16(10+(k+i)%200))
		}
		return fr
	}
	req := udpBytes(t, 1025, 69, rrq(1, "msblast.exe", "octet", "blksize", "512", "tsize", "0", "timeout", "5"))
	var worms []netip.Addr
	ts := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	emit := func(data []byte) {
		ts = ts.Add(time.Duration(1+rng.IntN(4)) * time.Microsecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}, data); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 0, 2048)
	for i := 0; i < n; i++ {
		if i%10000 == 5000 {
			// The pieces of a datagram travel tagged alike.
			k, first := len(worms), i
			v4 := netip.AddrFrom4([4]byte{10, 200 + byte(k>>16), byte(k >> 8), byte(k)})
			v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x15, 14: byte(k >> 8), 15: byte(k)})
			switch {
			case k%10 == 3: // IPv4 fragments
				a := v4.As4()
				for _, p := range []struct {
					off  int
					more bool
				}{{0, true}, {16, false}} {
					end := len(req)
					if p.more {
						end = p.off + 16
					}
					ip := ip4Raw(protoUDP, req[p.off:end])
					copy(ip[12:], a[:])
					binary.BigEndian.PutUint16(ip[4:], uint16(0x1500+k))
					fo := uint16(p.off / 8)
					if p.more {
						fo |= 0x2000
					}
					binary.BigEndian.PutUint16(ip[6:], fo)
					ipv4sum(ip)
					emit(frame(ip, false, first))
					i++
				}
				i-- // the loop counts the last piece
				worms = append(worms, v4)
			case k%10 == 7: // IPv6 fragments
				for _, p := range []struct {
					off  int
					more bool
				}{{0, true}, {16, false}} {
					end := len(req)
					if p.more {
						end = p.off + 16
					}
					fo := uint16(p.off/8) << 3
					if p.more {
						fo |= 1
					}
					h := []byte{protoUDP, 0, byte(fo >> 8), byte(fo), 0, 0, 0x15, byte(k)}
					ip := ip6Raw(nil, protoFragment, append(h, req[p.off:end]...))
					a := v6.As16()
					copy(ip[8:], a[:])
					emit(frame(ip, true, first))
					i++
				}
				i--
				worms = append(worms, v6)
			case k%4 == 1: // IPv6 behind extension headers
				ip := ip6Raw([]byte{protoHopByHop, protoDestOpts}, protoUDP, req)
				a := v6.As16()
				copy(ip[8:], a[:])
				emit(frame(ip, true, i))
				worms = append(worms, v6)
			default:
				ip := ip4Raw(protoUDP, req)
				a := v4.As4()
				copy(ip[12:], a[:])
				ipv4sum(ip)
				emit(frame(ip, false, i))
				worms = append(worms, v4)
			}
			continue
		}
		r := rng.IntN(total)
		var tp *tmpl
		for j := range tmpls {
			if r < tmpls[j].weight {
				tp = &tmpls[j]
				break
			}
			r -= tmpls[j].weight
		}
		buf = append(buf[:0], tp.ip...)
		// A client among 2^16 hosts and 2^15 ports: many flows.
		h := rng.Uint32()
		if tp.v6 {
			binary.BigEndian.PutUint32(buf[tp.addr+12:], h)
		} else {
			binary.BigEndian.PutUint16(buf[tp.addr+2:], uint16(h))
			ipv4sum(buf)
		}
		binary.BigEndian.PutUint16(buf[tp.prt:], uint16(32768+h>>17))
		emit(frame(buf, tp.v6, i))
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return worms
}

// TestReplayCapture makes the live-capture replay (small, or the big one
// with -replay-out) and checks a scan finds every worm request in it.
func TestReplayCapture(t *testing.T) {
	for _, vlan := range []bool{false, true} {
		path, n := filepath.Join(t.TempDir(), "replay.pcap"), 100_000
		if *replayOut != "" {
			if vlan != *replayVLAN {
				continue
			}
			path, n = *replayOut, *replayPackets
		}
		worms := writeReplay(t, path, n, vlan)
		var got evidencetest.Recorder
		m := NewMatcher(StaticSet{signatures.Default()}, &got, Options{})
		read, err := m.ScanFile(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		found := map[netip.Addr]bool{}
		for _, ev := range got.Events() {
			if ev.Role == evidence.RoleRequester {
				found[ev.Host] = true
			}
		}
		for _, w := range worms {
			if !found[w] {
				t.Errorf("vlan=%v: worm request from %s not found", vlan, w)
			}
		}
		st := m.Stats()
		if read != uint64(n) || len(found) != len(worms) || st.Undecodable != 0 || len(worms) != n/10000 {
			t.Errorf("vlan=%v: read %d of %d, found %d of %d worm requests, stats %+v", vlan, read, n, len(found), len(worms), st)
		}
		fmt.Fprintf(os.Stderr, "replay %s: %d packets, %d bytes, %d worm requests\n", path, n, st.Bytes, len(worms))
	}
}

var printTcpdump = flag.Bool("print-tcpdump", false, "print the tcpdump expression equivalent to the kernel filter of the built-in set (scripts/perf-capture.sh)")

// TestTcpdumpExpression prints (with -print-tcpdump) the tcpdump filter
// expression that passes what Filter passes for the built-in set, for the
// side-by-side in perf-capture: the same UDP and TCP ports (TCP both ways),
// ICMP echo requests, every fragment, IPv6 behind extension headers, and
// all of it behind up to two VLAN tags.
func TestTcpdumpExpression(t *testing.T) {
	udp, tcp := map[uint16]bool{TFTPPort: true}, map[uint16]bool{}
	for _, s := range signatures.Default().Signatures() {
		for _, p := range s.Payloads {
			switch p.Proto {
			case signatures.UDP:
				udp[p.Port] = true
			case signatures.TCP:
				tcp[p.Port] = true
			}
		}
	}
	var parts []string
	for p := range udp {
		parts = append(parts, fmt.Sprintf("udp dst port %d", p))
	}
	for p := range tcp {
		parts = append(parts, fmt.Sprintf("tcp port %d", p))
	}
	slices.Sort(parts)
	parts = append(parts, "(icmp and icmp[0] == 8)", "(icmp6 and ip6[40] == 128)", "(ip and ip[6:2] & 0x1fff != 0)",
		"(ip6 and ip6[6] == 44)", "(ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 60))")
	e := strings.Join(parts, " or ")
	expr := fmt.Sprintf("%s or (vlan and (%s or (vlan and (%s))))", e, e, e)
	if len(tcp) == 0 || !strings.Contains(expr, "udp dst port 69") {
		t.Fatalf("expression %q", expr)
	}
	if *printTcpdump {
		fmt.Println(expr)
	}
}
