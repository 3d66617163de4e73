package wire

import (
	"fmt"
	"slices"

	"golang.org/x/net/bpf"

	"wormsink/signatures"
)

// Filter builds the kernel (classic BPF) filter for live capture over
// Ethernet: it passes only what the matcher can use under set, so a busy
// mirror port costs the kernel, not the matcher.
//
//   - every VLAN-tagged frame (802.1Q, 802.1ad, 0x9100) and every IPv6
//     frame: the tags and extension headers move the offsets, so user space
//     decides (on Linux the kernel usually strips the outer tag before the
//     filter runs, and then the inner frame is filtered as usual);
//   - every IPv4 fragment but the first: it has no ports to look at;
//   - IPv4 UDP to port 69 and to the ports of UDP payload rules (all UDP
//     with anyPort or a port-less UDP rule), including first fragments;
//   - IPv4 TCP to or from the ports of TCP payload rules (all TCP for a
//     port-less rule; none without TCP rules): the server's SYN/ACK comes
//     from the rule's port, and the matcher needs it to see the handshake
//     complete (proof tcp);
//   - IPv4 ICMP when there are ICMP rules.
func Filter(set *signatures.Set, anyPort bool) ([]bpf.RawInstruction, error) {
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

	var a asm
	a.ins(bpf.LoadAbsolute{Off: 12, Size: 2})
	for _, t := range []uint32{0x8100, 0x88a8, 0x9100, 0x86dd} {
		a.jeq(t, "accept")
	}
	a.jne(0x0800, "reject")
	a.ins(bpf.LoadAbsolute{Off: 20, Size: 2})
	a.jset(0x1fff, "accept") // a fragment offset: not the first piece
	a.ins(bpf.LoadAbsolute{Off: 23, Size: 1})
	a.jeq(17, "udp")
	if tcpAll || len(tcpPorts) > 0 {
		a.jeq(6, "tcp")
	}
	if icmp {
		a.jeq(1, "accept")
	}
	a.ja("reject")

	ports := func(label string, all bool, ps []uint16, src bool) {
		a.label(label)
		if all {
			a.ja("accept")
			return
		}
		a.ins(bpf.LoadMemShift{Off: 14})              // X = IP header length
		a.ins(bpf.LoadIndirect{Off: 14 + 2, Size: 2}) // destination port
		for _, p := range ps {
			a.jeq(uint32(p), "accept")
		}
		if src {
			a.ins(bpf.LoadIndirect{Off: 14, Size: 2}) // source port
			for _, p := range ps {
				a.jeq(uint32(p), "accept")
			}
		}
		a.ja("reject")
	}
	ports("udp", udpAll, udpPorts, false)
	if tcpAll || len(tcpPorts) > 0 {
		ports("tcp", tcpAll, tcpPorts, true)
	}
	a.label("accept")
	a.ins(bpf.RetConstant{Val: 262144})
	a.label("reject")
	a.ins(bpf.RetConstant{Val: 0})
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
func (a *asm) jeq(v uint32, to string)  { a.prog = append(a.prog, step{kind: 'e', val: v, target: to}) }
func (a *asm) jne(v uint32, to string)  { a.prog = append(a.prog, step{kind: 'n', val: v, target: to}) }
func (a *asm) jset(v uint32, to string) { a.prog = append(a.prog, step{kind: 's', val: v, target: to}) }
func (a *asm) ja(to string)             { a.prog = append(a.prog, step{kind: 'a', target: to}) }
func (a *asm) label(name string)        { a.prog = append(a.prog, step{isLabel: true, labelFor: name}) }

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	pos := map[string]int{}
	n := 0
	for _, s := range a.prog {
		if s.isLabel {
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
	return bpf.Assemble(out)
}
