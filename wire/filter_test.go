package wire

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/net/bpf"

	"wormsink/signatures"
)

// TestFilter runs the kernel filter in x/net/bpf's VM over crafted frames.
func TestFilter(t *testing.T) {
	dg := udpBytes(t, 1025, 69, rrq(1, "msblast.exe", "octet"))
	vlanDNS := func() []byte {
		ip := ip4(other, infected, layers.IPProtocolUDP)
		u := &layers.UDP{SrcPort: 5353, DstPort: 53}
		u.SetNetworkLayerForChecksum(ip)
		return ser(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload("x"))
	}()
	withOpts := func() []byte { // IPv4 with options: the ports move
		ip := ip4(victim, infected, layers.IPProtocolUDP)
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		u := &layers.UDP{SrcPort: 1025, DstPort: 69}
		u.SetNetworkLayerForChecksum(ip)
		return ser(t, eth(layers.EthernetTypeIPv4), ip, u, gopacket.Payload(rrq(1, "msblast.exe", "octet")))
	}()
	arp := ser(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: 1, SourceHwAddress: macA, SourceProtAddress: victim,
		DstHwAddress: macB, DstProtAddress: infected})
	icmp := ser(t, eth(layers.EthernetTypeIPv4), ip4(other, infected, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}, gopacket.Payload("abcdefgh"))
	synAck := func() []byte { // the server's half of a handshake on a rule's port
		ip := ip4(infected, other, layers.IPProtocolTCP)
		tcp := &layers.TCP{SrcPort: 4444, DstPort: 40000, Seq: 7, Ack: 2, SYN: true, ACK: true, Window: 1000}
		tcp.SetNetworkLayerForChecksum(ip)
		return ser(t, eth(layers.EthernetTypeIPv4), ip, tcp)
	}()
	tests := []struct {
		name          string
		frame         []byte
		anyPort, pass bool
	}{
		{"tftp request", udp4(t, victim, infected, 1025, 69, rrq(1, "msblast.exe", "octet")), false, true},
		{"tftp request, ip options", withOpts, false, true},
		{"tftp from port 53", udp4(t, victim, infected, 53, 69, rrq(1, "msblast.exe", "octet")), false, true},
		{"dns", udp4(t, other, infected, 5353, 53, []byte("x")), false, false},
		{"dns with --any-port", udp4(t, other, infected, 5353, 53, []byte("x")), true, true},
		{"vlan-tagged dns", vlanDNS, false, true},
		{"first fragment to 69", frag4(t, victim, infected, 7, 0, true, dg[:16]), false, true},
		{"last fragment", frag4(t, victim, infected, 7, 16, false, dg[16:]), false, true},
		{"tiny last fragment", frag4(t, victim, infected, 7, 24, false, []byte{1}), false, true},
		{"tcp 4444", tcpFrame(t, 4444, []byte("x")), false, true},
		{"tcp 80 (HTTP exploit bodies carry loader command lines)", tcpFrame(t, 80, []byte("x")), false, true},
		{"tcp 443", tcpFrame(t, 443, []byte("x")), false, false},
		{"tcp from 4444 (SYN/ACK)", synAck, false, true},
		{"icmp echo", icmp, false, true},
		{"ipv6", ser(t, eth(layers.EthernetTypeIPv6), ip6(victim6, infected6, layers.IPProtocolNoNextHeader)), false, true},
		{"arp", arp, false, false},
	}
	for _, tt := range tests {
		prog, err := Filter(signatures.Default(), tt.anyPort)
		if err != nil {
			t.Fatal(err)
		}
		insns := make([]bpf.Instruction, len(prog))
		for i, r := range prog {
			insns[i] = r.Disassemble()
		}
		vm, err := bpf.NewVM(insns)
		if err != nil {
			t.Fatal(err)
		}
		n, err := vm.Run(tt.frame)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (n > 0) != tt.pass {
			t.Errorf("%s: filter returned %d, want pass=%v", tt.name, n, tt.pass)
		}
	}
	// Without TCP or ICMP rules, neither passes.
	set, err := signatures.Parse("t", []byte("serial: 1\nsignatures:\n  - id: a\n    family: A\n    tftp_files: [a.exe]\n"))
	if err != nil {
		t.Fatal(err)
	}
	prog, _ := Filter(set, false)
	insns := make([]bpf.Instruction, len(prog))
	for i, r := range prog {
		insns[i] = r.Disassemble()
	}
	vm, _ := bpf.NewVM(insns)
	for name, f := range map[string][]byte{"tcp 4444": tcpFrame(t, 4444, []byte("x")), "icmp": icmp} {
		if n, _ := vm.Run(f); n != 0 {
			t.Errorf("%s passed a filter without rules for it", name)
		}
	}
}
