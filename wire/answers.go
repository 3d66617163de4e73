package wire

import (
	"hash/maphash"
	"net/netip"
	"time"

	"wormsink/evidence"
	"wormsink/internal/tftp"
	"wormsink/signatures"
)

// answers remembers the worm requests seen, so that the server a request
// named can be judged by its own traffic: a request is the requester's
// packet and proves nothing about the server (its line is weak and a
// datagram, see Matcher.tftp), but the server's reply to the requester's
// address and port is the server's own packet. DATA or an OACK means it
// serves the file: a strong line of its own (not Named), whose proof is
// what that packet's source earns (a datagram, or trusted-source inside
// --trusted-sources). An ERROR refuses the file: it says nothing more
// about the server than the request did, and makes no line.
//
// The table is fixed-size and direct-mapped by a seeded hash: a flood of
// requests can only push entries out, never make a reply match, and
// nothing allocates after the first request.
type answers struct {
	seed maphash.Seed
	e    []answerEntry
}

type answerEntry struct {
	requester netip.AddrPort
	server    netip.Addr
	at        time.Time
	sig       string
	family    string
	file      string
	mode      string
	op        string
	serial    uint64
}

const (
	answerSlots = 1 << 12
	// answerWait is how long after a request its server's reply still
	// counts: TFTP servers answer within their first retransmission.
	answerWait = 30 * time.Second
)

func newAnswers() *answers {
	return &answers{seed: maphash.MakeSeed(), e: make([]answerEntry, answerSlots)}
}

func (a *answers) slot(requester netip.AddrPort, server netip.Addr) *answerEntry {
	var h maphash.Hash
	h.SetSeed(a.seed)
	b := requester.Addr().As16()
	h.Write(b[:])
	h.WriteByte(byte(requester.Port() >> 8))
	h.WriteByte(byte(requester.Port()))
	b = server.As16()
	h.Write(b[:])
	return &a.e[h.Sum64()&(answerSlots-1)]
}

// asked notes the worm request ev (a requester's wire_match).
func (a *answers) asked(ev *evidence.Event) {
	req := netip.AddrPortFrom(ev.Host, ev.Port)
	*a.slot(req, ev.Peer) = answerEntry{requester: req, server: ev.Peer, at: ev.Time,
		sig: ev.Sig, family: ev.Family, file: ev.File, mode: ev.Mode, op: ev.Op, serial: ev.Serial}
}

// answer completes ev, a reply candidate (the server's packet to the
// requester, its evidence already set by replyEvent), from the request it
// answers, and reports whether there was one. The first reply is the one
// that counts: the entry goes, so a transfer's other blocks add no lines.
func (a *answers) answer(ev *evidence.Event) bool {
	req := netip.AddrPortFrom(ev.Peer, ev.DstPort)
	e := a.slot(req, ev.Host)
	if e.requester != req || e.server != ev.Host || ev.Time.Sub(e.at) > answerWait || ev.Time.Before(e.at) {
		return false
	}
	ev.Sig, ev.Family, ev.File, ev.Mode, ev.Op, ev.Serial = e.sig, e.family, e.file, e.mode, e.op, e.serial
	*e = answerEntry{}
	return true
}

// replyPending marks a reply candidate a parallel scan's worker found: only
// the scanner's one ordered matcher knows the requests it may answer. It
// never leaves the package.
const replyPending evidence.Proof = 254

// replyEvent is the candidate line for a server's DATA or OACK pk: the server is
// its sender (Host), the requester its destination (Peer, DstPort).
func replyEvent(pk *packet) evidence.Event {
	ev := evidence.Event{
		Time:     pk.meta.Time,
		Kind:     evidence.WireMatch,
		Host:     pk.src,
		Port:     pk.sport,
		Peer:     pk.dst,
		Role:     evidence.RoleServer,
		Proto:    "udp",
		DstPort:  pk.dport,
		PCAP:     pk.meta.PCAP,
		Packet:   pk.meta.Packet,
		Evidence: signatures.Strong,
	}
	return ev
}

// serves reports whether p is a server's DATA or OACK: what it sends when
// it serves the file asked.
func serves(p []byte) bool {
	return tftp.IsServerReply(p) && (p[1] == tftp.OpData || p[1] == tftp.OpOACK)
}
