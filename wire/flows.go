package wire

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// flows remembers TCP handshakes, so that a payload rule matched on a TCP
// connection is evidence of proof "tcp" only when the sensor saw the
// connection's three-way handshake complete: SYN from the client with ISN
// c, SYN/ACK from the server acknowledging c+1 with ISN s, and the client's
// ACK of s+1 with sequence c+1. The last step is the one a forger cannot
// take: the SYN/ACK went to the real owner of the client address, so only
// it knows s.
//
// The table is fixed-size and set-associative: a set of flowWays entries
// per hash bucket, the least recently seen entry replaced when a new
// handshake needs room, so memory is bounded (flowWays*sets entries) and
// a flood of SYNs can only push handshakes out, never make one up. The hash
// is seeded at random so the sets a flood lands in cannot be chosen.
// Nothing allocates after NewMatcher.
type flows struct {
	e    []flowEntry
	mask uint64 // sets-1
	seed uint64

	// Set by each observe of a client's segment: the sequence number after
	// the highest client byte seen before it on its connection, from the
	// SYN on. The stream table asks it about a stream's first segment: one
	// beyond it came before bytes still to arrive (reordered), not after
	// bytes the sensor missed.
	clientNext  uint32
	clientKnown bool
}

const (
	flowWays = 4
	// DefaultTCPFlows is how many TCP handshakes a Matcher tracks at once.
	DefaultTCPFlows = 1 << 14
	// flowIdle is how long an entry lives without a packet; an entry older
	// than that is free, so a 4-tuple reused much later is not taken for
	// the old connection.
	flowIdle = int64(10 * time.Minute)
)

type flowState uint8

const (
	flowFree        flowState = iota
	flowSyn                   // SYN seen
	flowSynAck                // SYN/ACK acknowledging it seen
	flowEstablished           // the client's ACK of the server's ISN seen
)

// flowKey names a connection by who opened it. The addresses are kept as
// 16 bytes (IPv4 mapped), not netip.Addr, so the table holds no pointer
// and the garbage collector never scans it. (An IPv4 address and its
// IPv4-mapped IPv6 form, which RFC 4291 keeps off the wire, name the same
// endpoint here.)
type flowKey struct {
	client, server [16]byte
	cport, sport   uint16
}

type flowEntry struct {
	key        flowKey
	isnC, isnS uint32
	cnext      uint32 // after the highest client byte seen (see flows.clientNext)
	state      flowState
	seen       int64 // capture time of the last packet, unix nanoseconds
}

func newFlows(n int) *flows {
	sets := 1
	for sets*flowWays < n {
		sets <<= 1
	}
	return &flows{e: make([]flowEntry, sets*flowWays), mask: uint64(sets - 1), seed: rand.Uint64() | 1}
}

// set returns the entries a connection between endpoints a:ap and b:bp
// can live in. The hash is symmetric, so both directions of a connection
// land in the same set and one segment costs one set scan.
func (f *flows) set(a netip.Addr, ap uint16, b netip.Addr, bp uint16) []flowEntry {
	h := f.endpoint(a, ap) + f.endpoint(b, bp)
	h ^= h >> 31
	h *= 0x9E3779B97F4A7C15
	h ^= h >> 29
	i := (h & f.mask) * flowWays
	return f.e[i : i+flowWays]
}

func (f *flows) endpoint(a netip.Addr, port uint16) uint64 {
	b := a.As16()
	x := (f.seed ^ binary.LittleEndian.Uint64(b[:8])) * 0xBF58476D1CE4E5B9
	x ^= binary.LittleEndian.Uint64(b[8:]) ^ uint64(port)<<17
	x *= 0x94D049BB133111EB
	return x ^ x>>32
}

// find returns the live entry for k in set, or nil.
func find(set []flowEntry, k *flowKey, now int64) *flowEntry {
	for i := range set {
		e := &set[i]
		if e.state != flowFree && e.key == *k && now-e.seen < flowIdle {
			return e
		}
	}
	return nil
}

// slot returns the entry for k in set, taking a free, expired or the
// least recently seen one.
func slot(set []flowEntry, k *flowKey, now int64) *flowEntry {
	victim, oldest := &set[0], int64(0)
	for i := range set {
		e := &set[i]
		if e.state != flowFree && e.key == *k {
			return e
		}
		// Free and expired entries count as seen at time 0: taken first.
		seen := e.seen
		if e.state == flowFree || now-e.seen >= flowIdle {
			seen = 0
		}
		if i == 0 || seen < oldest {
			victim, oldest = e, seen
		}
	}
	*victim = flowEntry{key: *k}
	return victim
}

// observe follows the handshake with one TCP segment from src to dst and
// reports whether the segment belongs to a connection whose handshake
// completed (in either direction: the server's segments count too).
func (f *flows) observe(src, dst netip.Addr, tcp *layers.TCP, at time.Time) bool {
	return f.observeN(src, dst, tcp, len(tcp.Payload), at)
}

// observeN is observe for a segment carrying n bytes.
func (f *flows) observeN(src, dst netip.Addr, tcp *layers.TCP, n int, at time.Time) bool {
	now := at.UnixNano()
	f.clientKnown = false
	sport, dport := uint16(tcp.SrcPort), uint16(tcp.DstPort)
	fwd := flowKey{client: src.As16(), server: dst.As16(), cport: sport, sport: dport}
	rev := flowKey{client: fwd.server, server: fwd.client, cport: dport, sport: sport}
	set := f.set(src, sport, dst, dport)
	switch {
	case tcp.RST:
		// Either end may reset; a reset connection proves nothing more.
		for _, k := range [...]*flowKey{&fwd, &rev} {
			if e := find(set, k, now); e != nil {
				e.state = flowFree
			}
		}
		return false
	case tcp.SYN && !tcp.ACK:
		e := slot(set, &fwd, now)
		e.state, e.isnC, e.cnext, e.seen = flowSyn, tcp.Seq, tcp.Seq+1, now
		return false
	case tcp.SYN && tcp.ACK:
		if e := find(set, &rev, now); e != nil && e.state == flowSyn && tcp.Ack == e.isnC+1 {
			e.state, e.isnS, e.seen = flowSynAck, tcp.Seq, now
		}
		return false
	case !tcp.ACK:
		return false
	}
	if e := find(set, &fwd, now); e != nil {
		f.clientNext, f.clientKnown = e.cnext, true
		if end := tcp.Seq + uint32(n); int32(end-e.cnext) > 0 {
			e.cnext = end
		}
		switch e.state {
		case flowSynAck:
			if tcp.Ack == e.isnS+1 && tcp.Seq == e.isnC+1 {
				e.state, e.seen = flowEstablished, now
				return true // an ACK may carry data already
			}
		case flowEstablished:
			e.seen = now
			return true
		}
		return false
	}
	if e := find(set, &rev, now); e != nil && e.state == flowEstablished {
		e.seen = now
		return true
	}
	return false
}
