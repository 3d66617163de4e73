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
// is carried and how each finding is reported once.
//
// Reassembly is in order only. A segment starting where the stream's
// bytes end continues it; one wholly before that end is a retransmission
// (or arrived late) and is not read again, so it can neither count twice
// nor splice its bytes into what was already read; one overlapping the end
// gives only its new bytes; one beyond the end (a segment lost, or still
// to come) starts the stream afresh from it, and a late segment that falls
// in the gap it left is read alone, as a lone packet is.
//
// The table is fixed-size and set-associative like the handshake table
// (flows): streamWays entries per hashed set, a free or idle entry taken
// first, else the least recently seen, so a flood of connections can only
// push streams out (counted in Stats.StreamEvicted), never grow memory:
// entries × tail bytes, allocated at the first watched segment. The hash
// is seeded at random so a flood cannot choose its sets. Nothing allocates
// after that.
type streams struct {
	e       []streamEntry
	buf     []byte // tail bytes per entry
	tail    int
	mask    uint64
	seed    uint64
	scratch []byte // carried bytes then a segment, for matching
}

const (
	streamWays = 4
	// DefaultStreams is how many TCP streams a Matcher carries bytes for.
	DefaultStreams = 1 << 12
	// DefaultStreamTail is how many bytes of each stream are carried: the
	// longest command line the loader rules read (a tftp command with a
	// 255-byte name, URL-encoded or ${IFS}-spaced, fits) and any content.
	DefaultStreamTail = 512
	// streamIdle frees a stream without segments for that long.
	streamIdle = int64(5 * time.Minute)
	// maxSegment is the longest segment payload: an IP datagram's.
	maxSegment = 1 << 16
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
	// for the lines flushStreams writes at the end of a file.
	packet uint64
	proof  evidence.Proof
}

func newStreams(n, tail int) *streams {
	sets := 1
	for sets*streamWays < n {
		sets <<= 1
	}
	return &streams{
		e: make([]streamEntry, sets*streamWays), buf: make([]byte, sets*streamWays*tail), tail: tail,
		mask: uint64(sets - 1), seed: rand.Uint64() | 1, scratch: make([]byte, tail+maxSegment),
	}
}

// entry returns the index of the stream's entry and whether it was there;
// a new one takes a free or idle entry of its set, else the least recently
// seen (evicted reports that a live stream was pushed out). With create
// false it returns -1 for a stream it does not hold.
func (s *streams) entry(k *flowKey, src, dst netip.Addr, now int64, create bool) (idx int, found, evicted bool) {
	i := int((s.hash(src, k.cport, dst, k.sport) & s.mask) * streamWays)
	victim, oldest := i, int64(0)
	for j := i; j < i+streamWays; j++ {
		x := &s.e[j]
		live := x.used && now-x.seen < streamIdle
		if live && x.key == *k {
			return j, true, false
		}
		seen := x.seen
		if !live {
			seen = 0
		}
		if j == i || seen < oldest {
			victim, oldest = j, seen
		}
	}
	if !create {
		return -1, false, false
	}
	e := &s.e[victim]
	evicted = e.used && now-e.seen < streamIdle
	*e = streamEntry{key: *k, used: true}
	return victim, false, evicted
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

// inGap reports whether the bytes [from, to) fall in the gap e's stream
// skipped, where nothing was read.
func (e *streamEntry) inGap(from, to uint32) bool {
	return e.gapFrom != e.gapTo && int32(from-e.gapFrom) >= 0 && int32(e.gapTo-to) >= 0
}

// streamTable returns the stream table, made at the first segment that
// needs it.
func (m *Matcher) streamTable() *streams {
	if m.streams == nil {
		m.streams = newStreams(m.streamFlows, m.streamTail)
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
	s := m.streamTable()
	now := pk.meta.Time.UnixNano()
	k := flowKey{client: pk.src.As16(), server: pk.dst.As16(), cport: pk.sport, sport: pk.dport}
	seg := pk.payload
	idx, found, evicted := s.entry(&k, pk.src, pk.dst, now, len(seg) > 0)
	if idx < 0 {
		return 0 // a FIN or RST alone, of a stream not held
	}
	if evicted {
		m.stats.StreamEvicted++
	}
	e := &s.e[idx]
	last := seq + uint32(len(seg))
	if found {
		switch d := int32(seq - e.next); {
		case d > 0:
			// Bytes are missing: start afresh from this segment.
			e.gapFrom, e.gapTo = e.next, seq
			e.n = 0
			e.cur.Reset()
			m.stats.StreamGaps++
		case d < 0 && int32(last-e.next) <= 0:
			e.seen = now
			if len(seg) > 0 && e.inGap(seq, last) {
				// Late, and never read: alone. Bytes follow it (those
				// read already), so its last command is not known to end.
				var c signatures.StreamCursor
				return m.matchStream(pk, set, seg, 0, false, &c)
			}
			if len(seg) > 0 {
				m.stats.StreamRetransmits++
			}
			if end && last == e.next {
				e.used = false
			}
			return 0
		case d < 0:
			seg = seg[e.next-seq:] // only the bytes not read yet
		}
	} else {
		// What came before the first segment seen was never read: a
		// late segment from there is new.
		e.gapFrom, e.gapTo = seq-1<<30, seq
	}
	e.next, e.seen, e.packet, e.proof = last, now, pk.meta.Packet, pk.proof
	data, from := seg, 0
	if e.n > 0 {
		from = copy(s.scratch, s.buf[idx*s.tail:idx*s.tail+int(e.n)])
		data = s.scratch[:from+copy(s.scratch[from:], seg)]
		m.stats.StreamJoined++
	}
	e.cur.Keep = s.tail
	n := m.matchStream(pk, set, data, from, end, &e.cur)
	if end {
		e.used = false
		return n
	}
	// Carry the open command and the content rules' tail.
	keep := len(data) - max(set.MaxContent(signatures.TCP)-1, 0)
	if !e.cur.Lost {
		if len(data)-e.cur.Open <= s.tail {
			keep = min(keep, e.cur.Open)
		} else {
			e.cur.Lost = true
			m.stats.StreamLost++
		}
	}
	keep = max(keep, len(data)-s.tail, 0)
	e.n = uint16(copy(s.buf[idx*s.tail:(idx+1)*s.tail], data[keep:]))
	if e.cur.Lost {
		e.cur.Open = 0
	} else {
		e.cur.Open -= keep
	}
	return n
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
	set := m.sigs.Current()
	var open []int
	for i := range s.e {
		if e := &s.e[i]; e.used && e.n > 0 && !e.cur.Lost {
			open = append(open, i)
		}
	}
	// In packet order, so one core and a parallel scan (tables seeded
	// apart) write the same lines.
	slices.SortFunc(open, func(a, b int) int { return cmp.Compare(s.e[a].packet, s.e[b].packet) })
	n := 0
	for _, i := range open {
		e := &s.e[i]
		pk := packet{src: netip.AddrFrom16(e.key.client).Unmap(), dst: netip.AddrFrom16(e.key.server).Unmap(),
			sport: e.key.cport, dport: e.key.sport, proto: signatures.TCP, proof: e.proof,
			meta: Meta{Time: time.Unix(0, e.seen).UTC(), PCAP: pcap, Packet: e.packet}}
		data := s.buf[i*s.tail : i*s.tail+int(e.n)]
		n += m.matchStream(&pk, set, data, len(data), true, &e.cur)
	}
	for i := range s.e {
		s.e[i] = streamEntry{}
	}
	return n
}
