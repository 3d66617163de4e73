// Package wire is the packet matcher: it finds worm TFTP requests and payload
// patterns in captured frames (pcap files or a live interface) and records them.
package wire

import (
	"net/netip"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"wormsink/evidence"
	"wormsink/internal/tftp"
	"wormsink/signatures"
)

// StaticSet serves one set forever.
type StaticSet struct{ Set *signatures.Set }

// Current returns the set.
func (s StaticSet) Current() *signatures.Set { return s.Set }

// TFTPPort is where worm TFTP requests go.
const TFTPPort = 69

// Options tunes a Matcher. The zero value matches requests to port 69 with
// the default reassembly bounds.
type Options struct {
	// AnyPort also accepts well-formed TFTP requests to ports other than 69.
	AnyPort bool
	// FragDatagrams, FragBytes and FragTimeout bound IP reassembly state.
	FragDatagrams int
	FragBytes     int
	FragTimeout   time.Duration
	// TCPFlows bounds the TCP handshakes followed for proof "tcp" (see
	// flows); 0 means DefaultTCPFlows.
	TCPFlows int
	// Streams and StreamTail bound TCP stream reassembly (see streams):
	// how many streams carry bytes from one segment to the next, and how
	// many bytes each (at most 16384); 0 means DefaultStreams and
	// DefaultStreamTail. The table holds 2*Streams*StreamTail bytes (each
	// stream's carried tail and a segment held while the bytes before it
	// are missing), whatever the traffic.
	Streams    int
	StreamTail int
	// StreamIdle ends a stream without segments for that long: a command
	// still open in it (no separator after it, no FIN) is read as complete
	// then, as at a FIN; 0 means DefaultStreamIdle.
	StreamIdle time.Duration
}

// Meta is what the matcher knows of a packet beyond its bytes.
type Meta struct {
	Time   time.Time // capture time: the evidence time
	PCAP   string    // scan: the capture file name
	Packet uint64    // scan: the packet number, from 1
}

// Stats counts what a Matcher saw. A Matcher is used by one goroutine, so
// the fields are plain counters; read them from that goroutine.
type Stats struct {
	Packets      uint64 // frames offered
	Bytes        uint64 // their captured bytes
	Undecodable  uint64 // frames with a layer that did not decode (truncated, malformed)
	UnknownLink  uint64 // frames of a link type the matcher cannot decode
	TFTPRequests uint64 // well-formed TFTP requests seen (matched or not)
	Matches      uint64 // packets that matched a signature
	Events       uint64 // evidence events recorded
	Fragments    uint64 // IP fragments taken into reassembly
	Reassembled  uint64 // datagrams completed from fragments
	FragDropped  uint64 // datagrams dropped as malformed (overlap, too big, too many pieces)
	FragEvicted  uint64 // datagrams dropped to stay within the reassembly bounds
	FragExpired  uint64 // datagrams that timed out incomplete

	StreamJoined      uint64 // segments read together with the bytes carried from their stream
	StreamEvicted     uint64 // streams pushed out of the table by others
	StreamGaps        uint64 // streams started afresh after missing bytes
	StreamRetransmits uint64 // segments whose bytes were all read already (retransmitted, or late): not read again
	StreamLost        uint64 // fetch commands longer than the carried tail, whose start was dropped
	StreamHeld        uint64 // segments held until the bytes before them arrived (reordered)
	StreamEnded       uint64 // streams ended without FIN or RST: idle, pushed out, or the capture file's end
}

// Matcher decodes frames and records the worm traffic in them. It is not
// safe for concurrent use: give each capture its own Matcher (decoding
// state is preallocated per Matcher, which is what makes it allocation-free).
type Matcher struct {
	sigs     signatures.Source
	rec      evidence.Recorder
	anyPort  bool
	stats    Stats
	dec      *decoder
	defrag   *defragmenter
	flows    *flows   // nil until a TCP segment needs following
	tcpFlows int      // its size
	answers  *answers // worm requests whose server's reply is awaited; nil until the first
	streams  *streams // nil until a watched TCP segment carries bytes
	// Signatures a stream's bytes read again gave already (see rewind).
	suppress                [signatures.MaxPayloadMatches]*signatures.Signature
	nSuppress               int
	streamFlows, streamTail int
	streamIdle              int64  // nanoseconds
	frame                   []byte // the frame being matched

	// deferFrags (a parallel scan's worker) stops at an IP fragment and
	// sets deferred instead of reassembling: reassembly is stateful, so
	// fragments go to one matcher in packet order. Following handshakes is
	// stateful too: the worker notes each TCP segment in obs and leaves
	// the proof of its evidence pending, for that one matcher to decide.
	deferFrags, deferred bool
	obs                  []flowObs
	segs                 []segObs

	decodeAll bool // decode even the frames quiet says only count (tests)
}

// NewMatcher makes a Matcher recording into rec.
func NewMatcher(sigs signatures.Source, rec evidence.Recorder, opt Options) *Matcher {
	return newMatcher(sigs, rec, opt, false)
}

// newMatcher is NewMatcher; a parallel scan's worker (deferring) keeps no
// handshake table or reassembly state of its own: the GC would scan them
// for nothing.
func newMatcher(sigs signatures.Source, rec evidence.Recorder, opt Options, deferring bool) *Matcher {
	if opt.FragDatagrams <= 0 {
		opt.FragDatagrams = DefaultFragDatagrams
	}
	if opt.FragBytes <= 0 {
		opt.FragBytes = DefaultFragBytes
	}
	if opt.FragTimeout <= 0 {
		opt.FragTimeout = DefaultFragTimeout
	}
	if opt.TCPFlows <= 0 {
		opt.TCPFlows = DefaultTCPFlows
	}
	if opt.Streams <= 0 {
		opt.Streams = DefaultStreams
	}
	if opt.StreamTail <= 0 {
		opt.StreamTail = DefaultStreamTail
	}
	if opt.StreamIdle <= 0 {
		opt.StreamIdle = DefaultStreamIdle
	}
	m := &Matcher{sigs: sigs, rec: rec, anyPort: opt.AnyPort, dec: newDecoder(), deferFrags: deferring}
	m.tcpFlows = opt.TCPFlows
	// Two tails of carried bytes are counted in a uint16.
	m.streamFlows, m.streamTail, m.streamIdle = opt.Streams, min(opt.StreamTail, 1<<14), int64(opt.StreamIdle)
	m.defrag = newDefragmenter(opt.FragDatagrams, opt.FragBytes, opt.FragTimeout, &m.stats)
	return m
}

// Stats returns the counters so far.
func (m *Matcher) Stats() Stats { return m.stats }

// Supported reports whether the matcher decodes frames of link type lt.
func Supported(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeNull, layers.LinkTypeLoop, layers.LinkTypeRaw, linkTypeRawDLT, linkTypeRawOpenBSD,
		layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return true
	}
	return false
}

// DLT_RAW is 12 on some systems and 14 on OpenBSD; pcap files written
// there carry the LINKTYPE value 101, but some writers copy the DLT.
const (
	linkTypeRawDLT     layers.LinkType = 12
	linkTypeRawOpenBSD layers.LinkType = 14
)

// packet is the decoded view the matching works on.
type packet struct {
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	proto    signatures.Proto
	payload  []byte
	meta     Meta
	proof    evidence.Proof // how the source address was established
}

// Packet examines one frame of link type lt and returns how many evidence
// events it recorded. data is only read during the call.
func (m *Matcher) Packet(lt layers.LinkType, data []byte, meta Meta) int {
	return m.packet(lt, data, meta, false)
}

// packet is Packet; judged says the caller has already found the frame
// not quiet under the current signatures (a parallel scan's reader does).
func (m *Matcher) packet(lt layers.LinkType, data []byte, meta Meta, judged bool) int {
	m.stats.Packets++
	m.stats.Bytes += uint64(len(data))
	if !judged && lt == layers.LinkTypeEthernet && !m.decodeAll && quiet(m.sigs.Current(), m.anyPort, data) {
		return 0
	}
	d := m.dec
	m.frame = data
	p := d.first(lt, data)
	if p == nil {
		m.stats.UnknownLink++
		return 0
	}
	if err := p.DecodeLayers(data, &d.decoded); err != nil {
		// Still look at the layers that did decode: a bad TCP header
		// says nothing about the IP header before it.
		m.stats.Undecodable++
	}
	return m.walk(meta)
}

// walk looks at the layers just decoded.
func (m *Matcher) walk(meta Meta) int {
	d := m.dec
	var pk packet
	pk.meta = meta
	var fk fragKey
	n := 0
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			pk.src = netip.AddrFrom4([4]byte(d.ip4.SrcIP))
			pk.dst = netip.AddrFrom4([4]byte(d.ip4.DstIP))
			if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
				copy(fk.src[:], d.ip4.SrcIP)
				copy(fk.dst[:], d.ip4.DstIP)
				fk.id = uint32(d.ip4.Id)
				fk.proto = uint8(d.ip4.Protocol)
				fk.v6 = false
				if m.deferFrags {
					m.deferred = true
					return n
				}
				return m.fragment(fk, int(d.ip4.FragOffset)*8, d.ip4.Flags&layers.IPv4MoreFragments != 0, d.ip4.Payload, 0, &pk)
			}
		case layers.LayerTypeIPv6:
			pk.src = netip.AddrFrom16([16]byte(d.ip6.SrcIP))
			pk.dst = netip.AddrFrom16([16]byte(d.ip6.DstIP))
		case layers.LayerTypeIPv6Fragment:
			f := &d.ip6frag
			if f.FragmentOffset != 0 || f.MoreFragments {
				fk.src = pk.src.As16()
				fk.dst = pk.dst.As16()
				fk.id = f.Identification
				fk.v6 = true
				if m.deferFrags {
					m.deferred = true
					return n
				}
				return m.fragment(fk, int(f.FragmentOffset)*8, f.MoreFragments, f.Payload, uint8(f.NextHeader), &pk)
			}
		case layers.LayerTypeUDP:
			pk.sport, pk.dport = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
			pk.proto = signatures.UDP
			pk.payload = d.udp.Payload
			n += m.udp(&pk)
		case layers.LayerTypeTCP:
			pk.sport, pk.dport = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
			pk.proto = signatures.TCP
			pk.payload = d.tcp.Payload
			if m.follows(pk.sport, pk.dport) {
				pk.proof = m.tcpProof(pk.src, pk.dst, meta.Time)
			}
			n += m.tcpPayload(&pk, d.tcp.Seq, d.tcp.FIN, d.tcp.RST)
		case layers.LayerTypeICMPv4:
			if icmp4Carries(d.icmp4.TypeCode.Type()) {
				pk.proto = signatures.ICMP
				pk.payload = d.icmp4.Payload
				n += m.payload(&pk)
			}
		case layers.LayerTypeICMPv6:
			if icmp6Carries(d.icmp6.TypeCode.Type()) && len(d.icmp6.Payload) >= 4 {
				// gopacket's ICMPv6 header is 4 bytes; skip the id/seq (or the
				// unused word) so the payload means what it means for ICMPv4.
				pk.proto = signatures.ICMP
				pk.payload = d.icmp6.Payload[4:]
				n += m.payload(&pk)
			}
		}
	}
	return n
}

// icmp4Carries reports whether an ICMPv4 message of type t is one whose
// payload rules apply: echo requests only, which carry the sender's own
// bytes (Welchia's ping). Replies mirror the request (the replying host is
// not the source), errors quote someone else's packet, and limiting it to
// one type lets an IDS rule say the same with itype:8.
func icmp4Carries(t uint8) bool { return t == layers.ICMPv4TypeEchoRequest }

// icmp6Carries is icmp4Carries for ICMPv6: echo requests, type 128.
func icmp6Carries(t uint8) bool { return t == layers.ICMPv6TypeEchoRequest }

// fragment feeds one fragment to reassembly and, when it completes a
// datagram, decodes and matches the datagram's transport layer.
func (m *Matcher) fragment(k fragKey, off int, more bool, payload []byte, proto uint8, pk *packet) int {
	t := pk.meta.Time
	data, p := m.defrag.add(k, off, more, payload, proto, t)
	if data == nil {
		return 0
	}
	d := m.dec
	var first gopacket.LayerType
	switch layers.IPProtocol(p) {
	case layers.IPProtocolUDP:
		first = layers.LayerTypeUDP
	case layers.IPProtocolTCP:
		first = layers.LayerTypeTCP
	case layers.IPProtocolICMPv4:
		first = layers.LayerTypeICMPv4
	case layers.IPProtocolICMPv6:
		first = layers.LayerTypeICMPv6
	default:
		return 0
	}
	// Keep the addresses: decoding the transport does not touch them.
	src, dst := pk.src, pk.dst
	if err := d.transport(first).DecodeLayers(data, &d.decoded); err != nil && len(d.decoded) == 0 {
		m.stats.Undecodable++
		return 0
	}
	// Re-walk with the addresses already known: the decoded list now
	// starts at the transport layer.
	n := 0
	var q packet
	q.meta, q.src, q.dst = pk.meta, src, dst
	for _, lt := range d.decoded {
		switch lt {
		case layers.LayerTypeUDP:
			q.sport, q.dport, q.proto, q.payload = uint16(d.udp.SrcPort), uint16(d.udp.DstPort), signatures.UDP, d.udp.Payload
			n += m.udp(&q)
		case layers.LayerTypeTCP:
			q.sport, q.dport, q.proto, q.payload = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort), signatures.TCP, d.tcp.Payload
			if m.follows(q.sport, q.dport) {
				q.proof = m.tcpProof(q.src, q.dst, q.meta.Time)
			}
			n += m.tcpPayload(&q, d.tcp.Seq, d.tcp.FIN, d.tcp.RST)
		case layers.LayerTypeICMPv4:
			if icmp4Carries(d.icmp4.TypeCode.Type()) {
				q.proto, q.payload = signatures.ICMP, d.icmp4.Payload
				n += m.payload(&q)
			}
		case layers.LayerTypeICMPv6:
			if icmp6Carries(d.icmp6.TypeCode.Type()) && len(d.icmp6.Payload) >= 4 {
				q.proto, q.payload = signatures.ICMP, d.icmp6.Payload[4:]
				n += m.payload(&q)
			}
		}
	}
	return n
}

// proofPending marks evidence whose proof a parallel scan decides later;
// it never leaves the package.
const proofPending evidence.Proof = 255

// flowObs is what flows.observe reads of a TCP segment.
type flowObs struct {
	src, dst       netip.Addr
	at             time.Time
	sport, dport   uint16
	seq, ack       uint32
	n              int // payload bytes
	rst, syn, ackf bool
}

// observe replays o into m's handshake table and returns the proof.
func (m *Matcher) observe(o *flowObs) evidence.Proof {
	t := layers.TCP{SrcPort: layers.TCPPort(o.sport), DstPort: layers.TCPPort(o.dport), Seq: o.seq, Ack: o.ack, RST: o.rst, SYN: o.syn, ACK: o.ackf}
	if m.handshakes().observeN(o.src, o.dst, &t, o.n, o.at) {
		return evidence.ProofTCP
	}
	return evidence.ProofDatagram
}

// follows reports whether the handshake table follows a TCP connection
// between these ports: only one to or from a port a TCP payload rule looks
// at. No other segment can make evidence that needs the proof, and other
// traffic (a SYN flood to any other port) cannot push real handshakes out
// of the table.
func (m *Matcher) follows(sport, dport uint16) bool {
	set := m.sigs.Current()
	return set.PayloadPort(signatures.TCP, dport) || set.PayloadPort(signatures.TCP, sport)
}

// handshakes returns the handshake table, made at the first segment that
// needs it: a capture (or a signature file) without TCP to rule ports
// never pays for it.
func (m *Matcher) handshakes() *flows {
	if m.flows == nil {
		m.flows = newFlows(m.tcpFlows)
	}
	return m.flows
}

// tcpProof follows the handshake with the TCP segment just decoded: proof
// tcp when it is on a connection whose handshake the sensor saw complete,
// else a datagram (a lone segment anyone could have forged).
func (m *Matcher) tcpProof(src, dst netip.Addr, at time.Time) evidence.Proof {
	if m.deferFrags {
		t := &m.dec.tcp
		m.obs = append(m.obs, flowObs{src: src, dst: dst, at: at, sport: uint16(t.SrcPort), dport: uint16(t.DstPort),
			seq: t.Seq, ack: t.Ack, n: len(t.Payload), rst: t.RST, syn: t.SYN, ackf: t.ACK})
		return proofPending
	}
	if m.handshakes().observe(src, dst, &m.dec.tcp, at) {
		return evidence.ProofTCP
	}
	return evidence.ProofDatagram
}

// udp matches a TFTP request, a server serving one, and then the UDP
// payload rules.
func (m *Matcher) udp(pk *packet) int {
	n := 0
	if pk.dport == TFTPPort || m.anyPort {
		n += m.tftp(pk)
	}
	if serves(pk.payload) {
		n += m.reply(pk)
	}
	return n + m.payload(pk)
}

// reply records the server's line when pk answers a worm request seen
// before (see answers). A parallel scan's worker leaves the decision to
// the scanner's ordered matcher (replyPending).
func (m *Matcher) reply(pk *packet) int {
	if m.deferFrags {
		ev := replyEvent(pk)
		ev.Proof = replyPending
		m.rec.Record(ev)
		return 0
	}
	if m.answers == nil {
		return 0
	}
	ev := replyEvent(pk)
	if !m.answers.answer(&ev) {
		return 0
	}
	m.rec.Record(ev)
	m.stats.Events++
	return 1
}

// asked notes a worm request whose server's reply may follow; from a
// table shared with other workers it returns a reply already read.
func (m *Matcher) asked(ev *evidence.Event) (evidence.Event, bool) {
	if m.answers == nil {
		m.answers = newAnswers()
	}
	return m.answers.asked(ev)
}

// tftp parses the UDP payload as a TFTP request (never trusting gopacket's
// guess of the application layer, which is DNS for a request sent from
// port 53) and records both ends when a signature names the file.
func (m *Matcher) tftp(pk *packet) int {
	req, err := tftp.ParseRequest(pk.payload)
	if err != nil {
		return 0
	}
	m.stats.TFTPRequests++
	set := m.sigs.Current()
	// The name is only looked at during the call: no copy needed.
	fm, ok := set.MatchFile(unsafe.String(unsafe.SliceData(req.File), len(req.File)))
	if !ok {
		return 0
	}
	m.stats.Matches++
	ev := evidence.Event{
		Time:     pk.meta.Time,
		Kind:     evidence.WireMatch,
		Sig:      fm.Signature.ID,
		Family:   fm.Signature.Family,
		Evidence: signatures.Strong,
		Serial:   set.Serial(),
		File:     string(req.File),
		Mode:     string(req.Mode),
		Op:       req.OpName(),
		Proto:    "udp",
		DstPort:  pk.dport,
		PCAP:     pk.meta.PCAP,
		Packet:   pk.meta.Packet,
	}
	// The sender just got exploited and is fetching the worm; the receiver
	// is the infector serving it.
	ev.Host, ev.Port, ev.Peer, ev.Role = pk.src, pk.sport, pk.dst, evidence.RoleRequester
	m.rec.Record(ev)
	var reply evidence.Event
	replied := false
	if !m.deferFrags {
		reply, replied = m.asked(&ev) // a parallel scan's ordered matcher does it in emit
	}
	// dst_port is the port at the peer: for the server, the requester's.
	// The request is the requester's packet: it names the server but
	// proves nothing about it, so the server's line is weak and a
	// datagram (Named) until the server's own traffic says more.
	ev.Host, ev.Port, ev.Peer, ev.Role, ev.DstPort = pk.dst, pk.dport, pk.src, evidence.RoleServer, pk.sport
	ev.Evidence, ev.Proof, ev.Named = signatures.Weak, evidence.ProofDatagram, true
	m.rec.Record(ev)
	m.stats.Events += 2
	if replied {
		// Another worker read the server's reply first.
		m.rec.Record(reply)
		m.stats.Events++
		return 3
	}
	return 2
}

// payload applies the signature file's payload rules for pk's protocol:
// an event for each signature the packet is evidence for.
func (m *Matcher) payload(pk *packet) int {
	if len(pk.payload) == 0 {
		return 0
	}
	set := m.sigs.Current()
	if !set.HasPayloadRules(pk.proto) {
		return 0
	}
	return m.found(pk, set, set.MatchPayloads(pk.proto, pk.dport, pk.payload, func(pm signatures.PayloadMatch) bool {
		m.record(pk, set, pm)
		return true
	}))
}

// matchStream is payload for a segment of a stream: data is the carried
// bytes (data[:from]) then the segment's (see signatures.MatchStream).
// Signatures in m.suppress were reported already for these bytes (see
// rewind).
func (m *Matcher) matchStream(pk *packet, set *signatures.Set, data []byte, from int, end bool, c *signatures.StreamCursor) int {
	n := 0
	set.MatchStream(pk.proto, pk.dport, data, from, end, c, func(pm signatures.PayloadMatch) bool {
		for _, sig := range m.suppress[:m.nSuppress] {
			if sig == pm.Signature {
				return true
			}
		}
		m.record(pk, set, pm)
		n++
		return true
	})
	return m.found(pk, set, n)
}

// found counts the n events a packet made.
func (m *Matcher) found(pk *packet, set *signatures.Set, n int) int {
	if n > 0 {
		m.stats.Matches++
		m.stats.Events += uint64(n)
	}
	return n
}

// record records the event of payload rule match pm on pk.
func (m *Matcher) record(pk *packet, set *signatures.Set, pm signatures.PayloadMatch) {
	ev := evidence.Event{
		Time:     pk.meta.Time,
		Kind:     evidence.WireMatch,
		Host:     pk.src,
		Port:     pk.sport,
		Peer:     pk.dst,
		Role:     evidence.RoleSource,
		Proto:    pk.proto.String(),
		DstPort:  pk.dport,
		Sig:      pm.Signature.ID,
		Family:   pm.Signature.Family,
		Evidence: pm.Payload.Evidence,
		Serial:   set.Serial(),
		PCAP:     pk.meta.PCAP,
		Packet:   pk.meta.Packet,
		Proof:    pk.proof,
	}
	// ev.File stays empty: a line's file is a TFTP request's (the
	// reports take it for TFTP traffic), and this is telnet or HTTP.
	m.rec.Record(ev)
}
