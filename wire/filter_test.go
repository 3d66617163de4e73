package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"

	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// filterSigs has a rule of every kind the filter derives ports from.
const filterSigs = `serial: 1
signatures:
  - id: blaster
    family: Blaster
    tftp_files: [msblast.exe]
    payloads:
      - proto: tcp
        port: 4444
        contains: "tftp -i "
        nocase: true
  - id: slammer
    family: Slammer
    payloads:
      - proto: udp
        port: 1434
        contains: "|04 01 01 01|"
  - id: welchia
    family: Welchia
    payloads:
      - proto: icmp
        contains: "|AA AA AA AA|"
`

func mustParse(t testing.TB, yaml string) *signatures.Set {
	t.Helper()
	set, err := signatures.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// filterVM assembles the filter for set and loads it into x/net/bpf's VM.
func filterVM(t testing.TB, set *signatures.Set, anyPort bool) *bpf.VM {
	t.Helper()
	raw, err := Filter(set, anyPort)
	if err != nil {
		t.Fatal(err)
	}
	insns := make([]bpf.Instruction, len(raw))
	for i, r := range raw {
		insns[i] = r.Disassemble()
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// Raw frame builders: gopacket cannot serialise every extension header, and
// the filter must be checked against exact bytes anyway.

// ethRaw is an Ethernet header with the given VLAN tags (TPIDs, outermost
// first) in front of etherType, then l3.
func ethRaw(tpids []uint16, etherType uint16, l3 []byte) []byte {
	b := append([]byte{}, macB...)
	b = append(b, macA...)
	for i, tp := range tpids {
		b = binary.BigEndian.AppendUint16(b, tp)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i))
	}
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, l3...)
}

// ip6Raw is an IPv6 header, the extension headers exts (their protocol
// numbers; 44 is a first fragment with more to come), then an upper layer
// of protocol last.
func ip6Raw(exts []byte, last byte, upper []byte) []byte {
	var body []byte
	chain := append(append([]byte{}, exts...), last)
	for i, e := range exts {
		next := chain[i+1]
		if e == protoFragment {
			body = append(body, next, 0, 0, 1, 0, 0, 0x12, 0x34) // offset 0, more
			continue
		}
		body = append(body, next, 0, 1, 4, 0, 0, 0, 0) // PadN to 8 bytes
	}
	body = append(body, upper...)
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(body)))
	h[6] = chain[0]
	h[7] = 64
	copy(h[8:], victim6.To16())
	copy(h[24:], infected6.To16())
	return append(h, body...)
}

func ip4Raw(proto byte, upper []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(upper)))
	h[8] = 64
	h[9] = proto
	copy(h[12:], victim.To4())
	copy(h[16:], infected.To4())
	return append(h, upper...)
}

// tcpRaw is a TCP header to dport with payload.
func tcpRaw(dport uint16, payload []byte) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], 40000)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12] = 5 << 4
	h[13] = 0x18
	return append(h, payload...)
}

func icmpRaw(typ byte, payload []byte) []byte {
	return append([]byte{typ, 0, 0, 0, 0, 1, 0, 1}, payload...)
}

// TestFilter runs the kernel filter in x/net/bpf's VM over crafted frames,
// and checks the matcher's own decision on each: a frame it matches must
// pass.
func TestFilter(t *testing.T) {
	set := mustParse(t, filterSigs)
	tftp := udpBytes(t, 1025, 69, rrq(1, "msblast.exe", "octet"))
	dns := udpBytes(t, 5353, 53, []byte("x"))
	slam := udpBytes(t, 1026, 1434, []byte{4, 1, 1, 1, 1})
	cmd := tcpRaw(4444, []byte("tftp -i 10.0.0.9 GET msblast.exe"))
	web := tcpRaw(443, []byte("x"))
	aa := bytes.Repeat([]byte{0xAA}, 16)
	v4 := func(p byte, u []byte) []byte { return ethRaw(nil, 0x0800, ip4Raw(p, u)) }
	v6 := func(exts []byte, p byte, u []byte) []byte { return ethRaw(nil, 0x86dd, ip6Raw(exts, p, u)) }
	withOpts := func() []byte {
		ip := ip4(victim, infected, layers.IPProtocolUDP)
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		return ser(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(tftp))
	}()
	frag6 := func(off uint16, more bool, upper []byte) []byte {
		fo := off << 3
		if more {
			fo |= 1
		}
		h := []byte{protoUDP, 0, byte(fo >> 8), byte(fo), 0, 0, 0, 9}
		return v6([]byte{protoDestOpts}, protoFragment, append(h, upper...))
	}
	arp := ser(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: 1, SourceHwAddress: macA, SourceProtAddress: victim,
		DstHwAddress: macB, DstProtAddress: infected})
	long := make([]byte, filterExtHdrs+1)
	for i := range long {
		long[i] = protoDestOpts
	}
	q, ad, old := uint16(0x8100), uint16(0x88a8), uint16(0x9100)
	// The server's half of a handshake on a rule's port: the matcher needs
	// it for proof tcp.
	synAck := tcpRaw(40000, nil)
	binary.BigEndian.PutUint16(synAck[0:], 4444)
	synAck[13] = 0x12 // SYN, ACK
	tests := []struct {
		name    string
		frame   []byte
		anyPort bool
		pass    bool
	}{
		{"tftp request", v4(protoUDP, tftp), false, true},
		{"tftp request, ip options", withOpts, false, true},
		{"tftp from port 53", udp4(t, victim, infected, 53, 69, rrq(1, "msblast.exe", "octet")), false, true},
		{"dns", v4(protoUDP, dns), false, false},
		{"dns with --any-port", v4(protoUDP, dns), true, true},
		{"udp payload rule port", v4(protoUDP, slam), false, true},
		{"tcp rule port", v4(protoTCP, cmd), false, true},
		{"tcp 443", v4(protoTCP, web), false, false},
		{"tcp from 4444 (SYN/ACK)", v4(protoTCP, synAck), false, true},
		{"ipv6 tcp from 4444 (SYN/ACK)", v6([]byte{protoDestOpts}, protoTCP, synAck), false, true},
		{"vlan tcp from 4444 (SYN/ACK)", ethRaw([]uint16{q}, 0x0800, ip4Raw(protoTCP, synAck)), false, true},
		{"icmp echo", v4(protoICMP, icmpRaw(8, aa)), false, true},
		{"icmp echo reply", v4(protoICMP, icmpRaw(0, aa)), false, false},
		{"icmp unreachable", v4(protoICMP, icmpRaw(3, aa)), false, false},
		{"first fragment to 69", frag4(t, victim, infected, 7, 0, true, tftp[:16]), false, true},
		{"first fragment to 53", frag4(t, victim, infected, 7, 0, true, append(dns, make([]byte, 16)...)[:16]), false, false},
		{"last fragment", frag4(t, victim, infected, 7, 16, false, tftp[16:]), false, true},
		{"ip-in-ip", v4(protoIPIP, ip4Raw(protoUDP, tftp)), false, true},
		{"6in4", v4(protoIPv6, ip6Raw(nil, protoUDP, tftp)), false, true},
		{"gre", v4(47, make([]byte, 8)), false, false},
		{"truncated ipv4", ethRaw(nil, 0x0800, []byte{0x45, 0}), false, false},

		{"vlan tftp", ethRaw([]uint16{q}, 0x0800, ip4Raw(protoUDP, tftp)), false, true},
		{"vlan dns", ethRaw([]uint16{q}, 0x0800, ip4Raw(protoUDP, dns)), false, false},
		{"qinq tftp", ethRaw([]uint16{ad, q}, 0x0800, ip4Raw(protoUDP, tftp)), false, true},
		{"qinq dns", ethRaw([]uint16{ad, q}, 0x0800, ip4Raw(protoUDP, dns)), false, false},
		{"0x9100 tcp 4444", ethRaw([]uint16{old}, 0x0800, ip4Raw(protoTCP, cmd)), false, true},
		{"three tags: passed", ethRaw([]uint16{ad, q, q}, 0x0800, ip4Raw(protoUDP, dns)), false, true},
		{"vlan ipv6 tftp", ethRaw([]uint16{q}, 0x86dd, ip6Raw(nil, protoUDP, tftp)), false, true},
		{"qinq ipv6 https", ethRaw([]uint16{ad, q}, 0x86dd, ip6Raw(nil, protoTCP, web)), false, false},

		{"ipv6 tftp", v6(nil, protoUDP, tftp), false, true},
		{"ipv6 dns", v6(nil, protoUDP, dns), false, false},
		{"ipv6 https", v6(nil, protoTCP, web), false, false},
		{"ipv6 tcp 4444", v6(nil, protoTCP, cmd), false, true},
		{"ipv6 no next header", v6(nil, 59, nil), false, false},
		{"ipv6 hop-by-hop tftp", v6([]byte{protoHopByHop}, protoUDP, tftp), false, true},
		{"ipv6 hop-by-hop dns", v6([]byte{protoHopByHop}, protoUDP, dns), false, false},
		{"ipv6 hbh, routing, dest tftp", v6([]byte{protoHopByHop, protoRouting, protoDestOpts}, protoUDP, tftp), false, true},
		{"ipv6 hbh, routing, dest https", v6([]byte{protoHopByHop, protoRouting, protoDestOpts}, protoTCP, web), false, false},
		{"ipv6 atomic fragment tftp", v6([]byte{protoFragment}, protoUDP, tftp), false, true},
		{"ipv6 first fragment dns", frag6(0, true, dns), false, false},
		{"ipv6 first fragment tftp", frag6(0, true, tftp[:16]), false, true},
		{"ipv6 later fragment", frag6(2, true, tftp[16:24]), false, true},
		{"ipv6 last fragment", frag6(2, false, tftp[16:]), false, true},
		{"ipv6 chain too long: passed", v6(long, protoUDP, dns), false, true},
		{"ipv6 echo request", v6(nil, protoICMPv6, icmpRaw(128, aa)), false, true},
		{"ipv6 echo reply", v6(nil, protoICMPv6, icmpRaw(129, aa)), false, false},
		{"ipv6 neighbour solicitation", v6(nil, protoICMPv6, icmpRaw(135, aa)), false, false},
		{"icmp timestamp", v4(protoICMP, icmpRaw(13, aa)), false, false},
		{"ipv6 unreachable", v6(nil, protoICMPv6, icmpRaw(1, aa)), false, false},
		{"ipv6 dest opts, echo request", v6([]byte{protoDestOpts}, protoICMPv6, icmpRaw(128, aa)), false, true},
		{"ipv6 esp", v6(nil, 50, make([]byte, 16)), false, false},
		{"ipv6 in ipv6", v6(nil, protoIPv6, ip6Raw(nil, protoUDP, tftp)), false, true},
		{"arp", arp, false, false},
		{"802.3 length", ethRaw(nil, 0x0040, make([]byte, 64)), false, false},
	}
	vms := map[bool]*bpf.VM{false: filterVM(t, set, false), true: filterVM(t, set, true)}
	for _, tt := range tests {
		n, err := vms[tt.anyPort].Run(tt.frame)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (n > 0) != tt.pass {
			t.Errorf("%s: filter returned %d, want pass=%v", tt.name, n, tt.pass)
		}
		var got evidencetest.Recorder
		m := NewMatcher(StaticSet{set}, &got, Options{AnyPort: tt.anyPort})
		if m.Packet(layers.LinkTypeEthernet, tt.frame, Meta{Time: baseTime}); got.Len() > 0 && n == 0 {
			t.Errorf("%s: the matcher matches it (%s) but the filter drops it", tt.name, got.Events()[0].Sig)
		}
	}

	// Without TCP or ICMP rules, neither passes.
	vm := filterVM(t, mustParse(t, "serial: 1\nsignatures:\n  - id: a\n    family: A\n    tftp_files: [a.exe]\n"), false)
	for name, f := range map[string][]byte{"tcp 4444": v4(protoTCP, cmd), "icmp": v4(protoICMP, icmpRaw(8, aa)),
		"icmpv6": v6(nil, protoICMPv6, icmpRaw(128, aa))} {
		if n, _ := vm.Run(f); n != 0 {
			t.Errorf("%s passed a filter without rules for it", name)
		}
	}
	// A port-less TCP rule passes all TCP.
	vm = filterVM(t, mustParse(t, "serial: 1\nsignatures:\n  - id: a\n    family: A\n    payloads:\n      - proto: tcp\n        contains: x\n"), false)
	if n, _ := vm.Run(v6(nil, protoTCP, web)); n == 0 {
		t.Error("a port-less TCP rule does not pass TCP 443")
	}
}

// TestFilterManyPorts: hundreds of rule ports still assemble (every jump
// stays short) and each one passes.
func TestFilterManyPorts(t *testing.T) {
	for _, n := range []int{filterMaxPorts, filterMaxPorts + 1, 1000} {
		y := "serial: 1\nsignatures:\n  - id: a\n    family: A\n    payloads:\n"
		for p := range n {
			y += fmt.Sprintf("      - proto: tcp\n        port: %d\n        contains: x\n      - proto: udp\n        port: %d\n        contains: x\n", 1000+p, 1000+p)
		}
		vm := filterVM(t, mustParse(t, y), false)
		for _, p := range []uint16{1000, uint16(1000 + n - 1)} {
			for _, f := range [][]byte{ethRaw(nil, 0x0800, ip4Raw(protoTCP, tcpRaw(p, []byte("x")))),
				ethRaw(nil, 0x86dd, ip6Raw(nil, protoUDP, udpBytes(t, 1, p, []byte("x"))))} {
				if got, err := vm.Run(f); err != nil || got == 0 {
					t.Errorf("%d ports: port %d dropped (%v)", n, p, err)
				}
			}
		}
		if got, _ := vm.Run(ethRaw(nil, 0x0800, ip4Raw(protoTCP, tcpRaw(999, []byte("x"))))); (got > 0) != (n > filterMaxPorts) {
			t.Errorf("%d ports: port 999 passed=%v", n, got > 0)
		}
	}
}

// FuzzFilter is differential: a frame the matcher finds evidence in must
// pass the kernel filter (run in x/net/bpf's VM), with and without
// --any-port.
func FuzzFilter(f *testing.F) {
	set := mustParse(f, filterSigs)
	tftp := udpBytes(f, 1025, 69, rrq(1, "msblast.exe", "octet"))
	slam := udpBytes(f, 1026, 1434, []byte{4, 1, 1, 1, 1})
	cmd := tcpRaw(4444, []byte("tftp -i 10.0.0.9 GET msblast.exe"))
	aa := bytes.Repeat([]byte{0xAA}, 16)
	for _, tags := range [][]uint16{nil, {0x8100}, {0x88a8, 0x8100}} {
		f.Add(false, ethRaw(tags, 0x0800, ip4Raw(protoUDP, tftp)))
		f.Add(true, ethRaw(tags, 0x0800, ip4Raw(protoUDP, udpBytes(f, 1, 2000, rrq(1, "msblast.exe", "octet")))))
		f.Add(false, ethRaw(tags, 0x0800, ip4Raw(protoTCP, cmd)))
		f.Add(false, ethRaw(tags, 0x0800, ip4Raw(protoICMP, icmpRaw(8, aa))))
		f.Add(false, ethRaw(tags, 0x86dd, ip6Raw([]byte{protoHopByHop, protoDestOpts}, protoUDP, tftp)))
		f.Add(false, ethRaw(tags, 0x86dd, ip6Raw([]byte{protoRouting, protoFragment}, protoUDP, slam)))
		f.Add(false, ethRaw(tags, 0x86dd, ip6Raw(nil, protoTCP, cmd)))
		f.Add(false, ethRaw(tags, 0x86dd, ip6Raw([]byte{protoDestOpts}, protoICMPv6, icmpRaw(128, aa))))
		f.Add(false, ethRaw(tags, 0x0800, ip4Raw(protoIPv6, ip6Raw(nil, protoUDP, tftp))))
	}
	vms := map[bool]*bpf.VM{false: filterVM(f, set, false), true: filterVM(f, set, true)}
	f.Fuzz(func(t *testing.T, anyPort bool, frame []byte) {
		n, err := vms[anyPort].Run(frame)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		var got evidencetest.Recorder
		m := NewMatcher(StaticSet{set}, &got, Options{AnyPort: anyPort})
		if m.Packet(layers.LinkTypeEthernet, frame, Meta{Time: baseTime}); got.Len() > 0 {
			t.Fatalf("the filter drops a frame the matcher finds %s in: % x", got.Events()[0].Sig, frame)
		}
	})
}
