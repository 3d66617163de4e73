package signatures

import "bytes"

// A TCP stream carries a loader's command line in as many segments as the
// sender's writes (a shell echoing keystrokes, an exploit written in two
// calls) or the path's MSS make of it, so a packet matcher that reads each
// segment alone misses a line split at any byte. MatchStream reads a
// segment as the continuation of the bytes before it, which the caller
// carries over (see StreamCursor): content rules find a content that
// straddles the boundary, and command rules read the command still open at
// the end of the earlier bytes together with its rest. Each finding is
// reported once per stream position, never again for a later segment.

// StreamCursor is what MatchStream keeps of a stream between segments: where
// the command still open at the end of the bytes read so far starts, and
// the signatures already reported for it. It holds no pointers, so a table
// of them costs the garbage collector nothing. The zero value is the start
// of a stream.
type StreamCursor struct {
	// Open is where the bytes the next segment needs start, as an offset
	// into the data MatchStream was given: the word of the fetch command
	// still open at the end of the data, or, when none is, the word the
	// data ends in (never before the last separator). Nothing before it
	// changes what is read after it. After the call the caller carries at
	// least data[Open:] into the next call's data, and sets Open to where
	// those bytes start there.
	Open int
	// Lost says the caller dropped bytes from Open on (it could not carry
	// that much): command rules then skip the open command and read from
	// the next separator on.
	Lost bool
	// Keep is the most bytes the caller carries (0: no limit): where the
	// open command starts further back than that, MatchStream need not
	// find it.
	Keep int

	serial uint64
	seen   [MaxPayloadMatches]uint16 // signatures reported for the open command, by index
	nSeen  uint8
}

// Reset makes c the start of a new stream (after a gap in it).
func (c *StreamCursor) Reset() { *c = StreamCursor{} }

func (c *StreamCursor) has(si uint16) bool {
	for _, s := range c.seen[:c.nSeen] {
		if s == si {
			return true
		}
	}
	return false
}

func (c *StreamCursor) add(si uint16) {
	if !c.has(si) && int(c.nSeen) < len(c.seen) {
		c.seen[c.nSeen] = si
		c.nSeen++
	}
}

// SegmentAlone reports whether a segment of a stream to dstPort, read with
// nothing carried before it, needs nothing carried after it either: no
// content rule's content can start in its last bytes, and no fetch command
// can be in it or begin at its end (it spells no "ftp", holds no byte that
// decoding turns into another, and its last bytes hold no 't' or 'f' of a
// "tftp" the next segment completes). Such a segment reads the same alone
// (MatchPayloads) as in its stream, so a reader that holds nothing for its
// stream yet need not start holding it: the common web segment costs no
// stream state. A word cut at the segment's end is then read from the cut
// in the next segment, as at the start of a capture.
func (s *Set) SegmentAlone(proto Proto, dstPort uint16, seg []byte) bool {
	if proto > ICMP {
		return true
	}
	for _, r := range s.payloads[proto] {
		if r.p.Port != 0 && r.p.Port != dstPort || len(r.p.Contains) < 2 {
			continue
		}
		first := r.p.Contains[0]
		for _, c := range seg[max(0, len(seg)-len(r.p.Contains)+1):] {
			if c == first || r.p.NoCase && lower(c) == lower(first) {
				return false
			}
		}
	}
	if !s.cmdPorts[proto].has(dstPort) {
		return true
	}
	for _, c := range seg[max(0, len(seg)-3):] {
		if l := lower(c); l == 't' || l == 'f' {
			return false
		}
	}
	// "ftp" first: a loader's line fails here, at its command word.
	return indexFold(seg, []byte("ftp")) < 0 && bytes.IndexByte(seg, '%') < 0 && bytes.IndexByte(seg, '$') < 0 &&
		bytes.IndexByte(seg, 0xff) < 0
}

// ContentReach is the length of the longest content a content rule for
// proto looks for at dstPort: a stream to that port carries its last
// ContentReach-1 bytes for them (see MaxContent).
func (s *Set) ContentReach(proto Proto, dstPort uint16) int {
	if proto > ICMP {
		return 0
	}
	n := 0
	for _, r := range s.payloads[proto] {
		if r.p.Port == 0 || r.p.Port == dstPort {
			n = max(n, len(r.p.Contains))
		}
	}
	return n
}

// MaxContent is the length of the longest content a content rule for proto
// looks for: a stream's reader carries the last MaxContent-1 bytes so that
// a content split between two segments is found.
func (s *Set) MaxContent(proto Proto) int {
	if proto > ICMP {
		return 0
	}
	return s.maxContent[proto]
}

// MatchStream is MatchPayloads for a segment of a stream: data is the bytes
// carried from earlier segments (data[:from]) followed by the segment's own
// (data[from:]). It calls fn for every signature the segment is evidence
// for, once per signature, as MatchPayloads does for a packet, with these
// differences:
//   - a content rule counts only an occurrence that takes at least one of
//     the segment's bytes (the rest was found before);
//   - command rules read from c.Open: the open command's earlier part and
//     its rest are one command, and a signature already reported for it
//     is not reported again;
//   - the command left open at the end of data (no separator after it, end
//     false) may still grow: a name a signature lists is reported at once,
//     but the weak rule of signatures listing no names waits for the
//     command's end (a separator, or end: the stream closed), since "-r t"
//     is only the start of "-r tftp1.sh" when a shell sends keystrokes.
//
// On return c.Open is where the bytes the next segment needs start in
// data (up to len(data): none are, as after a separator).
func (s *Set) MatchStream(proto Proto, dstPort uint16, data []byte, from int, end bool, c *StreamCursor, fn func(PayloadMatch) bool) int {
	if proto > ICMP || from >= len(data) && !end {
		return 0
	}
	if c.serial != s.file.Serial {
		// Indices of another set: forget them.
		c.serial, c.nSeen = s.file.Serial, 0
	}
	var seen [MaxPayloadMatches]uint16
	n := 0
	report := func(si uint16, m PayloadMatch) bool {
		for _, x := range seen[:n] {
			if x == si {
				return true
			}
		}
		seen[n] = si
		n++
		return fn(m) && n < len(seen)
	}
	for _, r := range s.payloads[proto] {
		if r.p.Port != 0 && r.p.Port != dstPort {
			continue
		}
		// Only an occurrence ending in the segment: it starts at most
		// len-1 bytes before it.
		d := data[max(0, from-len(r.p.Contains)+1):]
		var hit bool
		if r.p.NoCase {
			hit = indexFold(d, r.p.Contains) >= 0
		} else {
			hit = bytes.Contains(d, r.p.Contains)
		}
		if hit && !report(r.si, PayloadMatch{Signature: r.sig, Payload: r.p}) {
			return n
		}
	}
	if !s.cmdPorts[proto].has(dstPort) {
		return n
	}
	start := c.Open
	if c.Lost {
		start = from
	}
	start = min(max(start, 0), len(data))
	cmd := data[start:]
	var f fetchScanner
	f.reset(cmd)
	f.track = true
	// The open command's signatures: c.seen for the command continued
	// (region 0), a fresh list for each later one.
	var cur [MaxPayloadMatches]uint16
	nCur, curRegion := 0, 0
	for _, si := range c.seen[:c.nSeen] {
		cur[nCur] = si
		nCur++
	}
	curHas := func(si uint16) bool {
		for _, x := range cur[:nCur] {
			if x == si {
				return true
			}
		}
		return false
	}
	stopped := false
	fetch := mayFetch(cmd)
	if fetch {
		for !stopped {
			name, long, ok := f.next()
			if !ok {
				break
			}
			if f.cmdSeps != curRegion {
				curRegion, nCur = f.cmdSeps, 0
			}
			if c.Lost && f.cmdSeps == 0 {
				continue // its start is not in data: it cannot be read
			}
			open := f.cmdOpen && !end
			elem := lastElementBytes(name)
			claimed := false
			for _, r := range s.commands[proto] {
				if len(r.sig.TFTPFiles) == 0 || r.p.Port != 0 && r.p.Port != dstPort || long || !listsName(r.files, elem) {
					continue
				}
				claimed = true
				if curHas(r.si) {
					continue
				}
				cur[nCur%len(cur)] = r.si
				nCur = min(nCur+1, len(cur))
				if !report(r.si, PayloadMatch{Signature: r.sig, Payload: r.p}) {
					stopped = true
					break
				}
			}
			if claimed || open || stopped {
				continue
			}
			for _, r := range s.commands[proto] {
				if len(r.sig.TFTPFiles) != 0 || r.p.Port != 0 && r.p.Port != dstPort || curHas(r.si) {
					continue
				}
				cur[nCur%len(cur)] = r.si
				nCur = min(nCur+1, len(cur))
				if !report(r.si, PayloadMatch{Signature: r.sig, Payload: r.p}) {
					stopped = true
					break
				}
			}
		}
	}
	// cut is where, in cmd, the bytes the next segment needs start: the
	// open fetch command's word (the words before it in its command mean
	// nothing to it), or the word the data ends in when no fetch command
	// is open (a new one can only start there). Nothing before it changes
	// what is read after it, so a command longer than the caller carries
	// is cut there instead of lost.
	cut := 0
	if stopped || !fetch {
		// The walk did not reach the end: the last raw separator ends the
		// command (an encoded one, %0A, is missed here: the command then
		// stays open a little longer, which costs carried bytes only).
		// Only the last c.Keep bytes are looked at: a command open longer
		// than that is not carried whole anyway.
		f.i, f.seps, f.lastSep = 0, 0, -1
		if c.Keep > 0 && len(cmd) > c.Keep {
			f.i = len(cmd) - c.Keep
		}
		from := f.i
		f.skipped(len(cmd))
		if !fetch {
			// cmd cannot spell a fetch command: none is open in it, and
			// it holds no IAC byte, so a boundary's raw offset is a
			// decoded one.
			cut = max(lastBoundary(cmd, max(from, f.lastSep)), 0)
		}
	} else if f.cmdOpen {
		cut = f.cmdWord
	} else {
		cut = f.tokStart
	}
	switch {
	case end:
		c.Open, c.Lost, c.nSeen = len(data), false, 0
	case f.lastSep >= 0:
		// A new command is open: what was seen of it in this segment.
		c.Open, c.Lost = start+max(f.lastSep, cut), false
		if curRegion != f.seps {
			nCur = 0
		}
		c.nSeen = uint8(copy(c.seen[:], cur[:nCur]))
	default:
		// The same command is still open.
		c.Open = start + cut
		if !c.Lost {
			c.nSeen = uint8(copy(c.seen[:], cur[:nCur]))
		}
	}
	return n
}
