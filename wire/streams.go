package wire

import (
	"cmp"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"wormsink/evidence"
	"wormsink/signatures"
)

// streams carries the last bytes of each watched TCP stream (one direction
// of a connection to a port a TCP payload rule looks at) from one segment
// to the next, so that a rule finds a command line or content however the
// sender's writes or the path cut it into segments: a shell echoing
// keystrokes sends one byte a segment. See signatures.MatchStream for what
// is carried and how each finding is reported once. What is carried is
// only what the next segment needs: the open fetch command from its word
// on, or the word the bytes end in, so a command line of any length is
// read, and only a single fetch command longer than the tail is lost.
//
// Reassembly is in order, as a TCP receiver's. A segment starting where
// the stream's bytes end continues it; one wholly before that end is a
// retransmission (or arrived late) and is not read again, so it can
// neither count twice nor splice its bytes into what was already read; one
// overlapping the end gives only its new bytes. One beyond the end (bytes
// still to come, or lost) is held, when it fits the stream's hold (one
// region of up to a tail's bytes, which later segments that continue it
// join), until the bytes before it arrive; then it is read in its place.
// A stream's first segment is held too when the handshake table knows its
// connection's earlier client bytes were never seen (they arrive after
// it). A gap never filled (a second region beyond it, a segment too big to
// hold, the stream's end) starts the stream afresh from the held bytes,
// and a late segment that falls in the gap it left is read alone, as a
// lone packet is.
//
// A stream ends at its sender's FIN or RST, and also when it is idle for
// the idle timeout, pushed out of the table, or the capture file ends: a
// command still open then (no separator after it) is read as complete, so
// a fetch of an unlisted name typed into a connection left open is
// reported (weak) at its last segment.
//
// The table is fixed-size and set-associative like the handshake table
// (flows): streamWays entries per hashed set, a free or idle entry taken
// first, else the least recently seen, so a flood of connections can only
// push streams out (counted in Stats.StreamEvicted), never grow memory:
// entries × 2 tails of bytes, allocated at the first watched segment that
// needs it. The hash is seeded at random so a flood cannot choose its
// sets. Nothing allocates after that.
type streams struct {
	e []streamEntry
	// Two tails of bytes per entry: the carried bytes from its start, and
	// a segment held out of order in its second half. While nothing is
	// held, the carried bytes may take both: a single fetch command up to
	// twice the tail is read whole.
	buf     []byte
	tail    int
	mask    uint64
	seed    uint64
	scratch []byte // carried bytes then a segment, for matching
	order   []int  // entries to end together, in packet order

	idle      int64 // StreamIdle, nanoseconds
	nextSweep int64 // capture time of the next look for idle streams
}

const (
	streamWays = 4
	// DefaultStreams is how many TCP streams a Matcher carries bytes for.
	DefaultStreams = 1 << 12
	// DefaultStreamTail is how many bytes of each stream are carried (and
	// at most held out of order): the longest single fetch command the
	// loader rules read whole (a tftp command with a 255-byte name,
	// ${IFS}-spaced, fits) and any content.
	DefaultStreamTail = 512
	// DefaultStreamIdle ends a stream without segments for that long.
	DefaultStreamIdle = 5 * time.Minute
	// maxSegment is the longest segment payload: an IP datagram's.
	maxSegment = 1 << 16
	// maxHoldAhead is how far beyond a stream's end a held segment may
	// start: a receive window's worth.
	maxHoldAhead = 1 << 20
)

type streamEntry struct {
	key  flowKey // client: the sender, server: the rule's port's side
	used bool
	n    uint16 // carried bytes, at the start of the entry's tail
	next uint32 // sequence number of the byte after the stream's last one
	// gapFrom, gapTo: the bytes skipped when a segment beyond the end
	// started the stream afresh; a late segment within them is new.
	gapFrom, gapTo uint32
	seen           int64
	cur            signatures.StreamCursor
	// The last segment read: its number in a scanned file and its proof,
	// for the lines written when the stream ends without a FIN.
	packet uint64
	proof  evidence.Proof
	// The held region (heldN bytes from heldSeq) and the last segment in
	// it: read when the bytes before heldSeq arrive.
	heldN      uint16
	headN      uint16 // or, when heldN is 0, the first bytes of the first segment seen (see joinHead)
	heldSeq    uint32
	heldEnd    bool // a FIN or RST came with it
	heldPacket uint64
	heldAt     int64
	heldProof  evidence.Proof
}

func newStreams(n, tail int, idle int64) *streams {
	sets := 1
	for sets*streamWays < n {
		sets <<= 1
	}
	e := sets * streamWays
	return &streams{
		e: make([]streamEntry, e), buf: make([]byte, e*2*tail), tail: tail,
		mask: uint64(sets - 1), seed: rand.Uint64() | 1, scratch: make([]byte, 2*tail+maxSegment),
		order: make([]int, 0, e), idle: idle,
	}
}

// lookup returns the index of the stream's entry and whether it was there;
// else (found false) the entry a new one would take: a free or idle entry
// of its set, else the least recently seen.
func (s *streams) lookup(k *flowKey, src, dst netip.Addr, now int64) (idx int, found bool) {
	i := int((s.hash(src, k.cport, dst, k.sport) & s.mask) * streamWays)
	victim, oldest := i, int64(0)
	for j := i; j < i+streamWays; j++ {
		x := &s.e[j]
		live := x.used && now-x.seen < s.idle
		if live && x.key == *k {
			return j, true
		}
		seen := x.seen
		if !live {
			seen = 0
		}
		if j == i || seen < oldest {
			victim, oldest = j, seen
		}
	}
	return victim, false
}

func (s *streams) hash(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) uint64 {
	a, b := src.As16(), dst.As16()
	x := (s.seed ^ binary.LittleEndian.Uint64(a[:8])) * 0xBF58476D1CE4E5B9
	x ^= binary.LittleEndian.Uint64(a[8:]) ^ uint64(sport)<<17
	x *= 0x94D049BB133111EB
	x ^= binary.LittleEndian.Uint64(b[:8])
	x *= 0xBF58476D1CE4E5B9
	x ^= binary.LittleEndian.Uint64(b[8:]) ^ uint64(dport)<<33
	x *= 0x94D049BB133111EB
	return x ^ x>>31
}

// carryArea is entry idx's bytes: carried from the start, held in the
// second half (holdArea).
func (s *streams) carryArea(idx int) []byte { return s.buf[idx*2*s.tail : (idx+1)*2*s.tail] }

func (s *streams) holdArea(idx int) []byte { return s.buf[(idx*2+1)*s.tail : (idx+1)*2*s.tail] }

// inGap reports whether the bytes [from, to) fall in the gap e's stream
// skipped, where nothing was read.
func (e *streamEntry) inGap(from, to uint32) bool {
	return e.gapFrom != e.gapTo && int32(from-e.gapFrom) >= 0 && int32(e.gapTo-to) >= 0
}

// streamTable returns the stream table, made at the first segment that
// needs it.
func (m *Matcher) streamTable() *streams {
	if m.streams == nil {
		m.streams = newStreams(m.streamFlows, m.streamTail, m.streamIdle)
	}
	return m.streams
}

// tcpPayload matches a TCP segment's payload: as the continuation of its
// stream when a payload rule looks at its destination port (the sender is
// the client, typing into the rule's service), else alone, as before.
func (m *Matcher) tcpPayload(pk *packet, seq uint32, fin, rst bool) int {
	set := m.sigs.Current()
	if !set.HasPayloadRules(signatures.TCP) {
		return 0
	}
	if !set.PayloadPort(signatures.TCP, pk.dport) {
		return m.payload(pk)
	}
	if len(pk.payload) == 0 && !fin && !rst {
		return 0
	}
	if m.deferFrags {
		m.segs = append(m.segs, segObs{src: pk.src, dst: pk.dst, sport: pk.sport, dport: pk.dport,
			seq: seq, end: fin || rst, off: payloadOffset(m.frame, pk.payload), n: len(pk.payload)})
		return 0
	}
	return m.stream(pk, set, seq, fin || rst)
}

// segObs is a TCP segment a parallel scan's worker leaves to the ordered
// matcher's stream table: its payload is frame[off:off+n].
type segObs struct {
	src, dst     netip.Addr
	sport, dport uint16
	seq          uint32
	end          bool
	off, n       int
}

// payloadOffset is where p starts in frame, which holds it.
func payloadOffset(frame, p []byte) int {
	if len(p) == 0 {
		return 0
	}
	return int(uintptr(unsafe.Pointer(unsafe.SliceData(p))) - uintptr(unsafe.Pointer(unsafe.SliceData(frame))))
}

// stream reads a segment of a watched stream (see streams); end says the
// sender closed or reset it.
func (m *Matcher) stream(pk *packet, set *signatures.Set, seq uint32, end bool) int {
	now := pk.meta.Time.UnixNano()
	k := flowKey{client: pk.src.As16(), server: pk.dst.As16(), cport: pk.sport, sport: pk.dport}
	seg := pk.payload
	// The client's bytes before this segment, as the handshake table saw
	// them (read now: it is this segment's).
	var cnext uint32
	cknown := false
	if m.flows != nil {
		cnext, cknown = m.flows.clientNext, m.flows.clientKnown
		m.flows.clientKnown = false
	}
	n := 0
	if m.streams != nil {
		n = m.sweepStreams(set, now, pk.meta.PCAP)
	} else if len(seg) == 0 {
		return 0 // a FIN or RST alone, of a stream not held
	}
	// early: the handshake table saw the connection's client bytes up to
	// cnext, and this segment starts beyond: the bytes between are still
	// to come (reordered), so it waits for them.
	early := cknown && int32(seq-cnext) > 0
	s := m.streamTable()
	idx, found := s.lookup(&k, pk.src, pk.dst, now)
	if !found {
		if len(seg) == 0 {
			return n // a FIN or RST alone, of a stream not held
		}
		if s.e[idx].used {
			if now-s.e[idx].seen < s.idle {
				m.stats.StreamEvicted++
			}
			n += m.endStream(set, idx, pk.meta.PCAP)
		}
		e := &s.e[idx]
		*e = streamEntry{key: k, used: true}
		// What came before the first segment seen was never read: a
		// late segment from there is new.
		e.gapFrom, e.gapTo, e.next = seq-1<<30, seq, seq
		switch {
		case early && int32(seq-cnext) < maxHoldAhead:
			// Wait for the connection's bytes before it, as at a gap.
			e.gapFrom, e.gapTo, e.next = cnext-1<<30, cnext, cnext
		case !cknown:
			// Nothing says where the stream starts: keep its first bytes
			// (the hold is free), so that a segment that turns out to
			// have come before them is read together with them.
			e.headN = uint16(copy(s.holdArea(idx), seg))
		}
	}
	// The common segment (a web request's) that continues a stream
	// carrying nothing and that leaves nothing to carry is read alone, by
	// the content rules (it holds no fetch command), and only its end is
	// noted: it is where the stream's next bytes start.
	if e := &s.e[idx]; len(seg) > 0 && !end && !early && e.n == 0 && e.heldN == 0 && seq == e.next &&
		set.SegmentAlone(signatures.TCP, pk.dport, seg) {
		e.next, e.seen, e.packet, e.proof = seq+uint32(len(seg)), now, pk.meta.Packet, pk.proof
		e.cur.Reset()
		return n + m.found(pk, set, set.MatchContents(pk.proto, pk.dport, seg, func(pm signatures.PayloadMatch) bool {
			m.record(pk, set, pm)
			return true
		}))
	}
	return n + m.segment(pk, set, idx, seq, seg, end)
}

// segment reads seg, the bytes from seq of a segment of the stream in
// entry idx, at its place in the stream (see streams).
func (m *Matcher) segment(pk *packet, set *signatures.Set, idx int, seq uint32, seg []byte, end bool) int {
	s := m.streams
	e := &s.e[idx]
	now := pk.meta.Time.UnixNano()
	last := seq + uint32(len(seg))
	switch d := int32(seq - e.next); {
	case d > 0:
		e.seen = now
		if m.hold(pk, idx, seq, seg, end) {
			return 0
		}
		// A gap never filled: start afresh from the held bytes, then
		// read this segment at its place after them.
		n := 0
		if e.heldN > 0 {
			n = m.restart(set, idx, false, pk.meta.PCAP)
			if !e.used {
				return n
			}
			if int32(seq-e.next) > 0 && m.hold(pk, idx, seq, seg, end) {
				return n
			}
			if int32(seq-e.next) <= 0 {
				return n + m.segment(pk, set, idx, seq, seg, end)
			}
		}
		// Bytes are missing and this segment cannot wait for them:
		// start afresh from it, keeping its first bytes (the hold is
		// free) for the segment that fills the gap's end (see joinHead).
		e.gapFrom, e.gapTo = e.next, seq
		e.n = 0
		e.cur.Reset()
		e.headN = uint16(copy(s.holdArea(idx), seg))
		m.stats.StreamGaps++
	case d < 0 && int32(last-e.next) <= 0:
		e.seen = now
		if len(seg) > 0 && e.inGap(seq, last) {
			if e.headN > 0 && e.heldN == 0 && last == e.gapTo {
				// It came before the stream's first segment seen.
				if e.next == e.gapTo+uint32(e.headN) {
					// That segment is all the stream read, and kept
					// whole: read the stream again from this one.
					return m.rewind(pk, set, idx, seq, seg)
				}
				return m.joinHead(pk, set, idx, seq, seg)
			}
			// Late, and never read: alone. Bytes follow it (those
			// read already), so its last command is not known to end.
			// The gap shrinks by it: read once, never twice.
			switch {
			case last == e.gapTo:
				e.gapTo = seq
			case seq == e.gapFrom:
				e.gapFrom = last
			}
			var c signatures.StreamCursor
			return m.matchStream(pk, set, seg, 0, false, &c)
		}
		if len(seg) > 0 {
			m.stats.StreamRetransmits++
		}
		if end && last == e.next && e.heldN == 0 {
			e.used = false
		}
		return 0
	case d < 0:
		seg = seg[e.next-seq:] // only the bytes not read yet
	}
	n := m.read(pk, set, idx, seg, last, end)
	if e.used && e.heldN > 0 && int32(e.heldSeq-e.next) <= 0 {
		// The gap before the held bytes is filled: read them now.
		n += m.readHeld(set, idx, pk.meta.PCAP)
	}
	return n
}

// read reads seg, which continues the stream in entry idx, and carries
// what the next segment needs.
func (m *Matcher) read(pk *packet, set *signatures.Set, idx int, seg []byte, last uint32, end bool) int {
	s := m.streams
	e := &s.e[idx]
	e.next, e.seen, e.packet, e.proof = last, pk.meta.Time.UnixNano(), pk.meta.Packet, pk.proof
	data, from := seg, 0
	if e.n > 0 {
		from = copy(s.scratch, s.carryArea(idx)[:e.n])
		data = s.scratch[:from+copy(s.scratch[from:], seg)]
		m.stats.StreamJoined++
	}
	// The carry may take the hold's half too while nothing is held.
	lim := s.tail
	if e.heldN == 0 {
		lim = 2 * s.tail
	}
	e.cur.Keep = lim
	n := m.matchStream(pk, set, data, from, end, &e.cur)
	if end {
		if e.heldN == 0 {
			e.used = false
		}
		e.n = 0
		e.cur.Reset()
		return n
	}
	// Carry the open command and the content rules' tail.
	keep := len(data) - max(set.ContentReach(signatures.TCP, pk.dport)-1, 0)
	if !e.cur.Lost {
		if len(data)-e.cur.Open <= lim {
			keep = min(keep, e.cur.Open)
		} else {
			e.cur.Lost = true
			m.stats.StreamLost++
		}
	}
	keep = max(keep, len(data)-lim, 0)
	e.n = uint16(copy(s.carryArea(idx)[:lim], data[keep:]))
	if int(e.n) > s.tail {
		e.headN = 0 // overwritten
	}
	if e.cur.Lost {
		e.cur.Open = 0
	} else {
		e.cur.Open -= keep
	}
	return n
}

// rewind starts the stream in entry idx again at seg, a late segment that
// ends where its first segment seen (all it read, kept whole as its head)
// began: seg and the head are read as the stream's bytes, in their order,
// so its carried bytes and open command are what they would have been
// had they come in order. What the head gave when read alone was reported
// then and is not reported again.
func (m *Matcher) rewind(pk *packet, set *signatures.Set, idx int, seq uint32, seg []byte) int {
	s := m.streams
	e := &s.e[idx]
	h := s.holdArea(idx)[:e.headN]
	var c signatures.StreamCursor
	set.MatchStream(pk.proto, pk.dport, h, 0, false, &c, func(pm signatures.PayloadMatch) bool {
		m.suppress[m.nSuppress] = pm.Signature
		m.nSuppress++
		return m.nSuppress < len(m.suppress)
	})
	// Into scratch first: the carry may take the hold's room.
	data := s.scratch[:copy(s.scratch, seg)]
	data = data[:len(data)+copy(s.scratch[len(data):], h)]
	e.headN, e.gapTo, e.n = 0, seq, 0
	e.cur.Reset()
	m.stats.StreamJoined++
	n := m.read(pk, set, idx, data, e.next, false)
	m.nSuppress = 0
	return n
}

// joinHead reads a late segment that ends where the stream's first
// segment seen began together with that segment's first bytes (kept in the
// hold): a line whose halves came swapped on a connection whose start the
// sensor did not see. What those bytes gave when read alone (reported
// then) is not reported again: only what the late bytes add.
func (m *Matcher) joinHead(pk *packet, set *signatures.Set, idx int, seq uint32, seg []byte) int {
	s := m.streams
	e := &s.e[idx]
	h := s.holdArea(idx)[:e.headN]
	e.headN, e.gapTo = 0, seq
	var before [signatures.MaxPayloadMatches]*signatures.Signature
	nb := 0
	var c signatures.StreamCursor
	set.MatchStream(pk.proto, pk.dport, h, 0, false, &c, func(pm signatures.PayloadMatch) bool {
		before[nb] = pm.Signature
		nb++
		return nb < len(before)
	})
	data := s.scratch[:copy(s.scratch, seg)]
	data = data[:len(data)+copy(s.scratch[len(data):], h)]
	m.stats.StreamJoined++
	c = signatures.StreamCursor{}
	n := 0
	set.MatchStream(pk.proto, pk.dport, data, 0, false, &c, func(pm signatures.PayloadMatch) bool {
		for _, b := range before[:nb] {
			if b == pm.Signature {
				return true
			}
		}
		m.record(pk, set, pm)
		n++
		return true
	})
	return m.found(pk, set, n)
}

// hold keeps a segment beyond the stream's end until the bytes before it
// arrive, when it fits the entry's hold: nothing held yet, or the held
// bytes' continuation (or a retransmission of some of them).
func (m *Matcher) hold(pk *packet, idx int, seq uint32, seg []byte, end bool) bool {
	s := m.streams
	e := &s.e[idx]
	if int32(seq-e.next) >= maxHoldAhead {
		return false
	}
	h := s.holdArea(idx)
	if e.heldN == 0 {
		if len(seg) == 0 || len(seg) > s.tail || int(e.n) > s.tail {
			return false
		}
		e.headN = 0 // the hold now holds this
		e.heldSeq, e.heldN = seq, uint16(copy(h, seg))
	} else {
		off := int(int32(seq - e.heldSeq))
		if off < 0 || off > int(e.heldN) || e.heldEnd {
			return false
		}
		if off+len(seg) <= int(e.heldN) {
			if len(seg) > 0 {
				m.stats.StreamRetransmits++
			}
			e.heldEnd = e.heldEnd || end && off+len(seg) == int(e.heldN)
			return true // held already
		}
		if off+len(seg) > s.tail {
			return false
		}
		e.heldN = uint16(off + copy(h[off:], seg))
	}
	e.heldEnd, e.heldPacket, e.heldAt, e.heldProof = end, pk.meta.Packet, pk.meta.Time.UnixNano(), pk.proof
	m.stats.StreamHeld++
	return true
}

// heldAsPacket is the packet the held bytes of e are read as: their last
// segment's.
func (e *streamEntry) heldAsPacket(pcap string) packet {
	return packet{src: netip.AddrFrom16(e.key.client).Unmap(), dst: netip.AddrFrom16(e.key.server).Unmap(),
		sport: e.key.cport, dport: e.key.sport, proto: signatures.TCP, proof: e.heldProof,
		meta: Meta{Time: time.Unix(0, e.heldAt).UTC(), PCAP: pcap, Packet: e.heldPacket}}
}

// readHeld reads the held bytes of entry idx at their place: the stream
// has reached (or passed) their start.
func (m *Matcher) readHeld(set *signatures.Set, idx int, pcap string) int {
	s := m.streams
	e := &s.e[idx]
	h := s.holdArea(idx)[:e.heldN]
	skip := int(int32(e.next - e.heldSeq))
	last, end := e.heldSeq+uint32(e.heldN), e.heldEnd
	pk := e.heldAsPacket(pcap)
	e.heldN, e.heldEnd = 0, false
	if skip >= len(h) {
		if end && skip == len(h) {
			e.used = false
		}
		return 0
	}
	// Read in place: the carry is written to buf, not to the hold.
	return m.read(&pk, set, idx, h[skip:], last, end)
}

// restart gives up waiting for the bytes before entry idx's held region:
// the stream starts afresh from it (the bytes carried before the gap are
// dropped, as at any gap), read to the stream's end when end is set.
func (m *Matcher) restart(set *signatures.Set, idx int, end bool, pcap string) int {
	e := &m.streams.e[idx]
	e.gapFrom, e.gapTo = e.next, e.heldSeq
	e.next = e.heldSeq
	e.n = 0
	e.cur.Reset()
	e.heldEnd = e.heldEnd || end
	m.stats.StreamGaps++
	return m.readHeld(set, idx, pcap)
}

// endStream ends the stream in entry idx without its sender's FIN: it was
// idle, is pushed out, or the capture file ended. A command still open
// in it is read as complete, at its last segment, as a FIN would have it;
// held bytes whose gap never filled are read as a fresh start first. The
// entry is then free.
func (m *Matcher) endStream(set *signatures.Set, idx int, pcap string) int {
	s := m.streams
	e := &s.e[idx]
	n := 0
	switch {
	case e.heldN > 0:
		n = m.restart(set, idx, true, pcap)
	case e.n > 0 && !e.cur.Lost:
		pk := packet{src: netip.AddrFrom16(e.key.client).Unmap(), dst: netip.AddrFrom16(e.key.server).Unmap(),
			sport: e.key.cport, dport: e.key.sport, proto: signatures.TCP, proof: e.proof,
			meta: Meta{Time: time.Unix(0, e.seen).UTC(), PCAP: pcap, Packet: e.packet}}
		data := s.carryArea(idx)[:e.n]
		n = m.matchStream(&pk, set, data, len(data), true, &e.cur)
	}
	if e.used {
		m.stats.StreamEnded++
	}
	*e = streamEntry{}
	return n
}

// sweepStreams ends the streams idle for the idle timeout at capture time
// now, looking a few times per timeout; in packet order, so one core and
// a parallel scan (tables seeded apart) write the same lines.
func (m *Matcher) sweepStreams(set *signatures.Set, now int64, pcap string) int {
	s := m.streams
	if now < s.nextSweep {
		return 0
	}
	s.nextSweep = now + max(s.idle/4, int64(time.Millisecond))
	s.order = s.order[:0]
	for i := range s.e {
		if e := &s.e[i]; e.used && now-e.seen >= s.idle {
			s.order = append(s.order, i)
		}
	}
	return m.endStreams(set, pcap)
}

// endStreams ends the streams of s.order, in packet order.
func (m *Matcher) endStreams(set *signatures.Set, pcap string) int {
	s := m.streams
	slices.SortFunc(s.order, func(a, b int) int { return cmp.Compare(s.e[a].lastPacket(), s.e[b].lastPacket()) })
	n := 0
	for _, i := range s.order {
		n += m.endStream(set, i, pcap)
	}
	s.order = s.order[:0]
	return n
}

// lastPacket is the number of the last segment of e's stream.
func (e *streamEntry) lastPacket() uint64 {
	if e.heldN > 0 {
		return max(e.packet, e.heldPacket)
	}
	return e.packet
}

// tickStreams ends the streams idle at now, for a live capture whose
// watched streams went quiet (no segment comes to look for them).
func (m *Matcher) tickStreams(now time.Time) int {
	if m.streams == nil {
		return 0
	}
	return m.sweepStreams(m.sigs.Current(), now.UnixNano(), "")
}

// deferredSegment reads a segment a parallel scan's worker left (see
// segObs) at its place in the file: frame is its packet, proof what the
// handshake table made of it.
func (m *Matcher) deferredSegment(o *segObs, frame []byte, meta Meta, proof evidence.Proof) {
	pk := packet{src: o.src, dst: o.dst, sport: o.sport, dport: o.dport, proto: signatures.TCP,
		payload: frame[o.off : o.off+o.n], meta: meta, proof: proof}
	m.stream(&pk, m.sigs.Current(), o.seq, o.end)
}

// flushStreams ends every stream at the end of a scanned file, as its
// sender's FIN would: a command still open there (a loader's line as the
// last bytes of a capture, no separator after it) is read as complete, so
// its weak finding is recorded, at its last segment. The streams are then
// forgotten: another file is another capture.
func (m *Matcher) flushStreams(pcap string) int {
	s := m.streams
	if s == nil {
		return 0
	}
	s.order = s.order[:0]
	for i := range s.e {
		if s.e[i].used {
			s.order = append(s.order, i)
		}
	}
	n := m.endStreams(m.sigs.Current(), pcap)
	for i := range s.e {
		s.e[i] = streamEntry{}
	}
	s.nextSweep = 0
	return n
}
