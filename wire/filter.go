package wire

import (
	"fmt"
	"slices"

	"golang.org/x/net/bpf"

	"wormsink/signatures"
)

// Kernel filter limits. The filter is classic BPF: no loops, so the VLAN
// tags and IPv6 extension headers it follows are unrolled a fixed number of
// times. A frame nested deeper than that is passed to user space (the
// matcher decides), never dropped.
const (
	filterTags     = 2  // VLAN tags still in the frame (802.1Q, 802.1ad, 0x9100)
	filterExtHdrs  = 6  // IPv6 extension headers followed
	filterMaxPorts = 64 // more distinct ports of one protocol: pass all of it
	filterSnap     = 262144
)

// IP protocol numbers the filter looks at.
const (
	protoHopByHop = 0
	protoICMP     = 1
	protoIPIP     = 4
	protoTCP      = 6
	protoUDP      = 17
	protoIPv6     = 41
	protoRouting  = 43
	protoFragment = 44
	protoICMPv6   = 58
	protoDestOpts = 60
)

// Filter builds the kernel (classic BPF) filter for live capture over
// Ethernet. It passes what the matcher can use under set and nothing else,
// so a busy mirror port costs the kernel, not the matcher:
//
//   - up to two VLAN tags in the frame are skipped (802.1Q, 802.1ad, 0x9100).
//     A tag the kernel already moved into packet metadata is not in the
//     bytes the filter sees, so in-frame walking covers the offloaded case
//     too: the frame then starts with the inner EtherType;
//   - IPv4 with or without options; IPv6 through hop-by-hop, routing,
//     destination-options and fragment headers, up to six of them;
//   - UDP to port 69 and to the ports of UDP payload rules (all UDP with
//     anyPort or a port-less UDP rule), and a TFTP server's DATA or OACK to
//     any port (it may answer a worm request: the server's own proof); TCP to or from the ports of TCP
//     payload rules (all TCP for a port-less rule; none without TCP rules):
//     the server's SYN/ACK comes from the rule's port, and the matcher needs
//     it to see the handshake complete (proof tcp); ICMP and ICMPv6 echo
//     requests, the one type payload rules apply to, when there are ICMP
//     rules;
//   - every IPv4 or IPv6 fragment but the first (it has no ports: it may
//     belong to a datagram that matches), and first fragments by their ports;
//   - IP-in-IP (protocol 4 and 41): the matcher decodes the inner packet.
//     So are ICMPv4 after IPv6 and ICMPv6 after IPv4, bridged Ethernet
//     (0x6558) and 0xffff, which gopacket reads as raw IPv4.
//
// Whatever the filter cannot follow (a deeper tag stack or extension chain)
// is passed, so it never hides a packet the matcher would match; a frame
// too short for a header the filter reads is dropped, as the matcher could
// not decode it either.
func Filter(set *signatures.Set, anyPort bool) ([]bpf.RawInstruction, error) {
	insns, err := filterProgram(set, anyPort)
	if err != nil {
		return nil, err
	}
	return bpf.Assemble(insns)
}

// filterProgram is Filter before assembly, for the x/net/bpf VM in tests.
func filterProgram(set *signatures.Set, anyPort bool) ([]bpf.Instruction, error) {
	udpAll, udpPorts := anyPort, []uint16{TFTPPort}
	var tcpAll bool
	var tcpPorts []uint16
	icmp := false
	for _, s := range set.Signatures() {
		for _, p := range s.Payloads {
			switch p.Proto {
			case signatures.UDP:
				udpAll = udpAll || p.Port == 0
				udpPorts = append(udpPorts, p.Port)
			case signatures.TCP:
				tcpAll = tcpAll || p.Port == 0
				tcpPorts = append(tcpPorts, p.Port)
			case signatures.ICMP:
				icmp = true
			}
		}
	}
	slices.Sort(udpPorts)
	udpPorts = slices.Compact(udpPorts)
	slices.Sort(tcpPorts)
	tcpPorts = slices.Compact(tcpPorts)
	udpAll = udpAll || len(udpPorts) > filterMaxPorts
	tcpAll = tcpAll || len(tcpPorts) > filterMaxPorts
	tcp := tcpAll || len(tcpPorts) > 0

	// Register use: X is the offset of the EtherType field while walking
	// tags, then the offset of the current IP header or extension header;
	// M[0] holds the protocol (next header) about to be read at X.
	var a asm
	a.ins(bpf.LoadConstant{Dst: bpf.RegX, Val: 12})
	for i := range filterTags {
		tag := fmt.Sprintf("tag%d", i)
		a.ins(bpf.LoadIndirect{Off: 0, Size: 2})
		a.jeq(0x8100, tag)
		a.jeq(0x88a8, tag)
		a.jeq(0x9100, tag)
		a.ja("ethertype")
		a.label(tag)
		a.addX(4)
	}
	a.ins(bpf.LoadIndirect{Off: 0, Size: 2})
	a.jeqFar(0x8100, "accept") // deeper than we follow
	a.jeqFar(0x88a8, "accept")
	a.jeqFar(0x9100, "accept")
	a.label("ethertype")
	a.jeq(0x0800, "ip4")
	a.jeq(0x86dd, "ip6")
	// gopacket (so the matcher) reads 0xffff as raw IPv4 and 0x6558 as a
	// whole inner Ethernet frame: neither is seen in real traffic, so pass
	// them rather than follow.
	a.jeqFar(0xffff, "accept")
	a.jeqFar(0x6558, "accept")
	a.ret(0)

	// IPv4: the header starts at X+2.
	a.label("ip4")
	a.ins(bpf.LoadIndirect{Off: 2 + 6, Size: 2})
	a.jsetFar(0x1fff, "accept") // a fragment offset: not the first piece
	a.ins(bpf.LoadIndirect{Off: 2 + 9, Size: 1})
	a.ins(bpf.StoreScratch{Src: bpf.RegA, N: 0})
	a.ins(bpf.LoadIndirect{Off: 2, Size: 1})
	a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f})
	a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
	a.ins(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 2})
	a.ins(bpf.TAX{}) // X = transport header
	a.ins(bpf.LoadScratch{Dst: bpf.RegA, N: 0})
	a.jeqFar(protoUDP, "udp")
	if tcp {
		a.jeqFar(protoTCP, "tcp")
	}
	if icmp {
		a.jeqFar(protoICMP, "icmp4")
		a.jeqFar(protoICMPv6, "icmp6") // the matcher decodes it after IPv4 too
	}
	a.jeqFar(protoIPIP, "accept")
	a.jeqFar(protoIPv6, "accept")
	a.ret(0)

	// IPv6: the fixed header starts at X+2, its payload at X+42.
	a.label("ip6")
	a.ins(bpf.LoadIndirect{Off: 2 + 6, Size: 1})
	a.ins(bpf.StoreScratch{Src: bpf.RegA, N: 0})
	a.addX(42)
	for i := range filterExtHdrs {
		ext, frag, next := fmt.Sprintf("ext%d", i), fmt.Sprintf("frag%d", i), fmt.Sprintf("chain%d", i+1)
		a.label(fmt.Sprintf("chain%d", i))
		a.ins(bpf.LoadScratch{Dst: bpf.RegA, N: 0})
		a.jeqFar(protoUDP, "udp")
		if tcp {
			a.jeqFar(protoTCP, "tcp")
		}
		if icmp {
			a.jeqFar(protoICMPv6, "icmp6")
			a.jeqFar(protoICMP, "icmp4") // the matcher decodes it after IPv6 too
		}
		a.jeq(protoFragment, frag)
		a.jeq(protoHopByHop, ext)
		a.jeq(protoRouting, ext)
		a.jeq(protoDestOpts, ext)
		a.jeqFar(protoIPIP, "accept")
		a.jeqFar(protoIPv6, "accept")
		a.ret(0)
		// Hop-by-hop, routing, destination options: next header, then the
		// length in 8-byte units not counting the first 8.
		a.label(ext)
		a.ins(bpf.LoadIndirect{Off: 0, Size: 1})
		a.ins(bpf.StoreScratch{Src: bpf.RegA, N: 0})
		a.ins(bpf.LoadIndirect{Off: 1, Size: 1})
		a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 3})
		a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 8})
		a.ins(bpf.ALUOpX{Op: bpf.ALUOpAdd})
		a.ins(bpf.TAX{})
		a.ja(next)
		// Fragment: 8 bytes; only the first piece carries the ports.
		a.label(frag)
		a.ins(bpf.LoadIndirect{Off: 2, Size: 2})
		a.jsetFar(0xfff8, "accept")
		a.ins(bpf.LoadIndirect{Off: 0, Size: 1})
		a.ins(bpf.StoreScratch{Src: bpf.RegA, N: 0})
		a.addX(8)
		a.ja(next)
	}
	a.label(fmt.Sprintf("chain%d", filterExtHdrs))
	a.ja("accept") // a longer chain than we follow

	// Transport headers start at X.
	ports := func(label string, all bool, ps []uint16, src bool) {
		a.label(label)
		if all {
			a.ja("accept")
			return
		}
		offs := []uint32{2} // destination port
		if src {
			offs = append(offs, 0) // and source port
		}
		for _, off := range offs {
			a.ins(bpf.LoadIndirect{Off: off, Size: 2})
			for _, p := range ps {
				// A return right behind each test keeps every jump short,
				// however many ports there are.
				a.ins(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(p), SkipTrue: 1})
				a.ret(filterSnap)
			}
		}
		if label == "udp" {
			// A TFTP server's DATA or OACK, to the requester's port
			// (any): the matcher pairs it with a worm request. Last, as
			// a datagram too short for the load is dropped there.
			a.ins(bpf.LoadIndirect{Off: 8, Size: 2})
			a.jeqFar(3, "accept")
			a.jeqFar(6, "accept")
		}
		a.ret(0)
	}
	ports("udp", udpAll, udpPorts, false)
	if tcp {
		ports("tcp", tcpAll, tcpPorts, true)
	}
	if icmp {
		// The types icmp4Carries and icmp6Carries accept: echo requests.
		a.label("icmp4")
		a.ins(bpf.LoadIndirect{Off: 0, Size: 1})
		a.jeq(8, "accept")
		a.ja("reject")
		a.label("icmp6")
		a.ins(bpf.LoadIndirect{Off: 0, Size: 1})
		a.jeq(128, "accept")
		a.ja("reject")
	}
	a.label("accept")
	a.ret(filterSnap)
	a.label("reject")
	a.ret(0)
	return a.assemble()
}

// asm is a tiny assembler with forward labels for classic BPF.
type asm struct{ prog []step }

type step struct {
	ins      bpf.Instruction
	kind     byte // 0 plain, 'e' jeq, 'n' jne, 's' jset, 'a' ja
	val      uint32
	target   string
	isLabel  bool
	labelFor string
}

func (a *asm) ins(i bpf.Instruction)    { a.prog = append(a.prog, step{ins: i}) }
func (a *asm) ret(v uint32)             { a.ins(bpf.RetConstant{Val: v}) }
func (a *asm) jeq(v uint32, to string)  { a.prog = append(a.prog, step{kind: 'e', val: v, target: to}) }
func (a *asm) jne(v uint32, to string)  { a.prog = append(a.prog, step{kind: 'n', val: v, target: to}) }
func (a *asm) jset(v uint32, to string) { a.prog = append(a.prog, step{kind: 's', val: v, target: to}) }
func (a *asm) ja(to string)             { a.prog = append(a.prog, step{kind: 'a', target: to}) }
func (a *asm) label(name string)        { a.prog = append(a.prog, step{isLabel: true, labelFor: name}) }

// jeqFar and jsetFar are jeq and jset to a label beyond the 255
// instructions a conditional jump reaches: a test over an unconditional
// jump.
func (a *asm) jeqFar(v uint32, to string) {
	a.ins(bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: v, SkipTrue: 1})
	a.ja(to)
}

func (a *asm) jsetFar(v uint32, to string) {
	a.ins(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: v, SkipFalse: 1})
	a.ja(to)
}

// addX adds v to X (through A, which it clobbers).
func (a *asm) addX(v uint32) {
	a.ins(bpf.TXA{})
	a.ins(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: v})
	a.ins(bpf.TAX{})
}

func (a *asm) assemble() ([]bpf.Instruction, error) {
	pos := map[string]int{}
	n := 0
	for _, s := range a.prog {
		if s.isLabel {
			if _, dup := pos[s.labelFor]; dup {
				return nil, fmt.Errorf("bpf: label %q twice", s.labelFor)
			}
			pos[s.labelFor] = n
			continue
		}
		n++
	}
	var out []bpf.Instruction
	for _, s := range a.prog {
		if s.isLabel {
			continue
		}
		here := len(out)
		if s.kind == 0 {
			out = append(out, s.ins)
			continue
		}
		to, ok := pos[s.target]
		if !ok || to <= here {
			return nil, fmt.Errorf("bpf: bad jump to %q", s.target)
		}
		skip := to - here - 1
		if skip > 255 && s.kind != 'a' {
			return nil, fmt.Errorf("bpf: jump to %q too far", s.target)
		}
		switch s.kind {
		case 'e':
			out = append(out, bpf.JumpIf{Cond: bpf.JumpEqual, Val: s.val, SkipTrue: uint8(skip)})
		case 'n':
			out = append(out, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: s.val, SkipTrue: uint8(skip)})
		case 's':
			out = append(out, bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: s.val, SkipTrue: uint8(skip)})
		case 'a':
			out = append(out, bpf.Jump{Skip: uint32(skip)})
		}
	}
	if len(out) > 4096 {
		return nil, fmt.Errorf("bpf: %d instructions, the kernel takes 4096", len(out))
	}
	return out, nil
}
