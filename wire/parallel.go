package wire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/evidence"
	"wormsink/signatures"
)

// ParallelScanner scans capture files on several cores and records exactly
// what one Matcher scanning them in order records, in the same order: the
// file is read once and cut into chunks of whole packets (by the workers
// themselves, in blocks, for a regular uncompressed pcap file; see
// blockCutter; else by one goroutine), workers decode and match the
// chunks, and the caller's goroutine hands each chunk's evidence on in
// file order. IP fragments are the exception: reassembly depends on every
// earlier fragment, so a worker leaves them to one matcher that sees them
// all, in packet order, as the chunks are handed on; TCP segments on rule
// ports are replayed through its handshake table the same way.
type ParallelScanner struct {
	sigs    signatures.Source
	anyPort bool
	rec     evidence.Recorder
	workers []*Matcher
	recs    []*chunkRecorder
	frag    *Matcher // fragments, in order
}

// Chunk bounds: big enough that handing a chunk over costs nothing next to
// matching it, small enough that a few in flight per worker stay a few MiB.
// Variables so tests can make chunks tiny (fragments across chunks).
var (
	chunkBytes   = 256 << 10
	chunkPackets = 1024
)

// NewParallelScanner makes a scanner with n workers (at least 1) recording
// into rec. rec is only called from the goroutine calling Scan.
func NewParallelScanner(sigs signatures.Source, rec evidence.Recorder, opt Options, n int) *ParallelScanner {
	s := &ParallelScanner{sigs: sigs, anyPort: opt.AnyPort, rec: rec, frag: NewMatcher(sigs, rec, opt)}
	for range max(n, 1) {
		r := &chunkRecorder{}
		m := newMatcher(sigs, r, opt, true)
		s.workers = append(s.workers, m)
		s.recs = append(s.recs, r)
	}
	return s
}

// Stats returns the counters so far, as one Matcher would have counted
// them. Call it between scans.
func (s *ParallelScanner) Stats() Stats {
	st := s.frag.Stats()
	for _, m := range s.workers {
		w := m.Stats()
		st.Packets += w.Packets
		st.Bytes += w.Bytes
		st.Undecodable += w.Undecodable
		st.UnknownLink += w.UnknownLink
		st.TFTPRequests += w.TFTPRequests
		st.Matches += w.Matches
		st.Events += w.Events
	}
	return st
}

// ScanFile is Matcher.ScanFile on several cores. An uncompressed pcap
// that is a regular file is read in blocks by the workers themselves (see
// blockCutter).
func (s *ParallelScanner) ScanFile(ctx context.Context, path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err // *PathError names the file
	}
	defer f.Close()
	var ra io.ReaderAt
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		ra = f
	}
	return s.scan(ctx, f, ra, path)
}

// chunkPacket is one packet of a chunk: 32 bytes, written by the reader
// for every packet of the file, so it stays small (the time is made by
// the worker, and only for a packet it matches).
type chunkPacket struct {
	off, end  int
	sec, nsec uint32 // a plain pcap's time
	lt        layers.LinkType
	quiet     bool // quiet under the chunk's set: only counted
}

// meta is the packet's Meta: its time (from c.times when gopacket read
// it), the file and its number in the file.
func (c *scanChunk) meta(i int) Meta {
	p := &c.pkts[i]
	var t time.Time
	if c.times != nil {
		t = c.times[i]
	} else {
		t = time.Unix(int64(p.sec), int64(p.nsec)).UTC()
	}
	return Meta{Time: t, PCAP: c.name, Packet: c.num + uint64(i)}
}

type chunkEvent struct {
	idx int
	ev  evidence.Event
}

type scanChunk struct {
	name     string
	buf      []byte          // a blockCutter's block, after blockHead bytes of room
	num      uint64          // the number in the file of its first packet
	times    []time.Time     // each packet's time, when read through gopacket
	set      *signatures.Set // the signatures the reader judged quiet frames by
	data     []byte
	pkts     []chunkPacket
	evs      []chunkEvent
	deferred []int
	obs      []chunkObs
	segs     []chunkSeg
	done     chan struct{} // one token when matched; made once, reused
}

// chunkObs is a TCP segment's handshake fields, for emit to replay.
type chunkObs struct {
	idx int
	o   flowObs
}

// chunkSeg is a TCP segment of a watched stream, for emit to read in
// order through the ordered matcher's stream table.
type chunkSeg struct {
	idx int
	s   segObs
}

// chunkRecorder keeps a worker's evidence with the packet it came from.
type chunkRecorder struct {
	c   *scanChunk
	idx int
}

func (r *chunkRecorder) Record(ev evidence.Event) {
	r.c.evs = append(r.c.evs, chunkEvent{r.idx, ev})
}

// Scan is Matcher.Scan on several cores: the same evidence in the same
// order, the same count and errors.
func (s *ParallelScanner) Scan(ctx context.Context, r io.Reader, name string) (uint64, error) {
	return s.scan(ctx, r, nil, name)
}

// scan is Scan; ra, when not nil, reads the same bytes as r from offset 0.
func (s *ParallelScanner) scan(ctx context.Context, r io.Reader, ra io.ReaderAt, name string) (uint64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	plain, err := plainPcap(br)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	var src packetSource
	var lt layers.LinkType
	var mixed bool
	if plain == nil {
		if src, lt, mixed, err = openCapture(br); err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
	} else {
		lt = plain.lt
	}
	if !mixed && !Supported(lt) {
		return 0, fmt.Errorf("%s: unsupported link type %d (%v)", name, uint32(lt), lt)
	}
	nw := len(s.workers)
	// A fixed set of chunks bounds the memory: the reader waits for one to
	// come back when all are in flight.
	p := &chunkPipe{name: name, sigs: s.sigs, anyPort: s.anyPort, free: make(chan *scanChunk, nw+2)}
	blocks := plain != nil && ra != nil
	for range cap(p.free) {
		c := &scanChunk{pkts: make([]chunkPacket, 0, chunkPackets), done: make(chan struct{}, 1)}
		if blocks {
			c.buf = make([]byte, blockHead+chunkBytes)
		} else {
			c.data = make([]byte, 0, chunkBytes)
		}
		p.free <- c
	}
	p.order = make(chan *scanChunk, cap(p.free))
	var wg sync.WaitGroup
	if blocks {
		bc := newBlockCutter(ctx, p, ra, plain)
		for i := range nw {
			m, rec := s.workers[i], s.recs[i]
			wg.Go(func() { bc.work(m, rec) })
		}
	} else {
		p.work = make(chan *scanChunk, cap(p.free))
		for i := range nw {
			m, rec := s.workers[i], s.recs[i]
			wg.Go(func() {
				for c := range p.work {
					matchChunk(m, rec, c)
				}
			})
		}
		go func() {
			defer close(p.order)
			defer close(p.work)
			if plain != nil {
				p.readPlain(ctx, br, plain)
			} else {
				p.readPackets(ctx, src, lt, mixed)
			}
		}()
	}

	// Hand the evidence on in file order.
	for c := range p.order {
		<-c.done
		s.emit(c)
		c.data, c.pkts, c.evs, c.deferred, c.obs, c.segs, c.set, c.times = c.data[:0], c.pkts[:0], c.evs[:0], c.deferred[:0], c.obs[:0], c.segs[:0], nil, c.times[:0]
		p.free <- c
	}
	wg.Wait()
	if ctx.Err() == nil || p.err == nil {
		s.frag.flushStreams(name)
	}
	// order is closed only after the reader's last write to n and err.
	return p.n, p.err
}

// chunkPipe is one scan's reader side: it fills chunks and sends them to
// the workers and, in the same order, to the caller.
type chunkPipe struct {
	name              string
	sigs              signatures.Source
	anyPort           bool
	free, work, order chan *scanChunk
	n                 uint64 // packets read
	err               error
}

func (p *chunkPipe) send(c *scanChunk) {
	c.name = p.name
	p.work <- c
	p.order <- c
}

// isQuiet is quiet for a frame of c with link type lt.
func (p *chunkPipe) isQuiet(c *scanChunk, lt layers.LinkType, frame []byte) bool {
	return lt == layers.LinkTypeEthernet && quiet(p.set(c), p.anyPort, frame)
}

// set returns the signatures c's quiet frames are judged by, taken when
// its first frame is. The reader has a frame's bytes in its cache as it
// cuts the record, so it picks out there the frames matching would only
// count (most of a mirror port's), and a worker need not fetch their bytes
// into its own cache.
func (p *chunkPipe) set(c *scanChunk) *signatures.Set {
	if c.set == nil {
		c.set = p.sigs.Current()
	}
	return c.set
}

// readPackets reads through a gopacket reader (gzip, pcapng), copying each
// packet into the chunk.
func (p *chunkPipe) readPackets(ctx context.Context, src packetSource, lt layers.LinkType, mixed bool) {
	c := <-p.free
	for {
		if p.n&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				p.err = fmt.Errorf("%s: stopped after packet %d: %w", p.name, p.n, err)
				break
			}
		}
		data, ci, err := src.ZeroCopyReadPacketData()
		if err != nil {
			if err != io.EOF {
				p.err = fmt.Errorf("%s: packet %d: %w", p.name, p.n+1, readErr(err))
			}
			break
		}
		p.n++
		plt := lt
		if mixed && len(ci.AncillaryData) > 0 {
			if l, ok := ci.AncillaryData[0].(layers.LinkType); ok {
				plt = l
			}
		}
		if len(c.pkts) > 0 && (len(c.data)+len(data) > cap(c.data) || len(c.pkts) >= chunkPackets) {
			p.send(c)
			c = <-p.free
		}
		off := len(c.data)
		c.data = append(c.data, data...)
		if len(c.pkts) == 0 {
			c.num = p.n
		}
		c.pkts = append(c.pkts, chunkPacket{off: off, end: len(c.data), lt: plt,
			quiet: p.isQuiet(c, plt, data)})
		if c.times == nil {
			c.times = make([]time.Time, 0, chunkPackets)
		}
		c.times = append(c.times, ci.Timestamp)
	}
	if len(c.pkts) > 0 {
		p.send(c)
	} else {
		p.free <- c
	}
}

// pcapHeader is what readPlain needs of a pcap file header.
type pcapHeader struct {
	order   binary.ByteOrder
	nanos   uint32 // nanoseconds per unit of the sub-second field
	snaplen uint32
	maxCap  int
	lt      layers.LinkType
}

// plainPcap reports whether br holds an uncompressed pcap file (not
// pcapng) and if so reads its header. pcapgo checks the header, so the
// errors are those of the one-core path.
func plainPcap(br *bufio.Reader) (*pcapHeader, error) {
	magic, err := br.Peek(4)
	if err != nil {
		return nil, nil // too short: openCapture says so
	}
	h := &pcapHeader{}
	switch binary.LittleEndian.Uint32(magic) {
	case 0xa1b2c3d4:
		h.order, h.nanos = binary.LittleEndian, 1000
	case 0xd4c3b2a1:
		h.order, h.nanos = binary.BigEndian, 1000
	case 0xa1b23c4d:
		h.order, h.nanos = binary.LittleEndian, 1
	case 0x4d3cb2a1:
		h.order, h.nanos = binary.BigEndian, 1
	default:
		return nil, nil
	}
	head, _ := br.Peek(24)
	pr, err := pcapgo.NewReader(bytes.NewReader(head))
	if err != nil {
		return nil, fmt.Errorf("pcap: %w", readErr(eofIsShort(err)))
	}
	h.lt = pr.LinkType()
	h.snaplen = pr.Snaplen()
	h.maxCap = max(int(h.snaplen), 262144) // pcapgo's bound
	br.Discard(24)
	return h, nil
}

// readPlain reads an uncompressed pcap file straight into chunk buffers
// and cuts them on record boundaries: the bytes are copied once, from the
// file into the chunk, and never again. Its errors are pcapgo's.
func (p *chunkPipe) readPlain(ctx context.Context, br *bufio.Reader, h *pcapHeader) {
	c := <-p.free
	pos := 0 // start of the first record not yet cut
	eof := false
	for {
		// Cut every whole record in the buffer.
		var err error
		if pos, err = p.cutRecords(ctx, h, c, pos, chunkPackets); err != nil {
			p.fail(c, err)
			return
		}
		full := len(c.pkts) >= chunkPackets || len(c.data) == cap(c.data)
		if eof || full {
			if eof && !full {
				p.fail(c, p.endErr(len(c.data)-pos))
				return
			}
			if len(c.pkts) > 0 {
				// Carry the partial record over into the next chunk.
				next := <-p.free
				next.data = append(next.data, c.data[pos:]...)
				c.data = c.data[:pos]
				p.send(c)
				c, pos = next, 0
			} else {
				// One record bigger than a chunk: make room for it.
				grown := make([]byte, len(c.data), 2*cap(c.data))
				copy(grown, c.data)
				c.data = grown
			}
			continue
		}
		k, err := io.ReadFull(br, c.data[len(c.data):cap(c.data)])
		c.data = c.data[:len(c.data)+k]
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			eof = true
		case err != nil:
			p.fail(c, fmt.Errorf("%s: packet %d: %w", p.name, p.n+1, err))
			return
		}
	}
}

// cutRecords cuts the whole records of c.data from pos on into c.pkts,
// until c holds max packets, and returns where the first record it did not
// cut starts. Its errors (a bad record length, ctx done) end the file; its
// checks and numbering are pcapgo's, so every path agrees on every file.
func (p *chunkPipe) cutRecords(ctx context.Context, h *pcapHeader, c *scanChunk, pos, max int) (int, error) {
	for len(c.pkts) < max && len(c.data)-pos >= 16 {
		hdr := c.data[pos : pos+16]
		capLen := int(h.order.Uint32(hdr[8:12]))
		origLen := int(h.order.Uint32(hdr[12:16]))
		if capLen > h.maxCap {
			return pos, fmt.Errorf("%s: packet %d: capture length exceeds snap length: %d > %d", p.name, p.n+1, capLen, h.snaplen)
		}
		if capLen > origLen {
			return pos, fmt.Errorf("%s: packet %d: capture length exceeds original packet length: %d > %d", p.name, p.n+1, capLen, origLen)
		}
		if len(c.data)-pos-16 < capLen {
			break
		}
		if p.n&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return pos, fmt.Errorf("%s: stopped after packet %d: %w", p.name, p.n, err)
			}
		}
		p.n++
		if len(c.pkts) == 0 {
			c.num = p.n
		}
		// nsec in uint32, as pcapgo computes it (a fraction field out of
		// range wraps there).
		c.pkts = append(c.pkts, chunkPacket{off: pos + 16, end: pos + 16 + capLen,
			sec: h.order.Uint32(hdr[0:4]), nsec: h.order.Uint32(hdr[4:8]) * h.nanos, lt: h.lt,
			quiet: p.isQuiet(c, h.lt, c.data[pos+16:pos+16+capLen])})
		pos += 16 + capLen
	}
	return pos, nil
}

// endErr is how a file ends whose last rest bytes are a cut-off record:
// pcapgo ends quietly when not one byte of its data is there, else
// reports it.
func (p *chunkPipe) endErr(rest int) error {
	if rest > 0 && rest != 16 {
		return fmt.Errorf("%s: packet %d: %w", p.name, p.n+1, readErr(io.ErrUnexpectedEOF))
	}
	return nil
}

// fail ends a read with err (nil: a clean end), sending what was cut.
func (p *chunkPipe) fail(c *scanChunk, err error) {
	p.err = err
	if len(c.pkts) > 0 {
		p.send(c)
	} else {
		c.data = c.data[:0]
		p.free <- c
	}
}

// matchChunk matches a chunk's packets with a worker's matcher, leaving
// the fragments for emit.
func matchChunk(m *Matcher, rec *chunkRecorder, c *scanChunk) {
	rec.c = c
	quietOK := m.sigs.Current() == c.set
	for i := range c.pkts {
		p := &c.pkts[i]
		if p.quiet && quietOK {
			m.stats.Packets++ // all Packet would do
			m.stats.Bytes += uint64(p.end - p.off)
			continue
		}
		rec.idx = i
		saved := m.stats
		m.deferred = false
		m.obs, m.segs = m.obs[:0], m.segs[:0]
		m.packet(p.lt, c.data[p.off:p.end], c.meta(i), quietOK)
		if !m.deferred {
			for _, o := range m.obs {
				c.obs = append(c.obs, chunkObs{i, o})
			}
			for _, o := range m.segs {
				c.segs = append(c.segs, chunkSeg{i, o})
			}
		} else {
			// The fragment matcher does this packet whole, counters and
			// evidence included.
			m.stats = saved
			for len(c.evs) > 0 && c.evs[len(c.evs)-1].idx == i {
				c.evs = c.evs[:len(c.evs)-1]
			}
			c.deferred = append(c.deferred, i)
		}
	}
	rec.c = nil
	c.done <- struct{}{}
}

// emit records a matched chunk's evidence in packet order: fragments go
// through the fragment matcher at their place, and TCP segments through
// its handshake table, which decides the proof of their evidence.
func (s *ParallelScanner) emit(c *scanChunk) {
	ei, di, oi, si := 0, 0, 0, 0
	for {
		next := -1
		for _, x := range [...]struct {
			ok  bool
			idx int
		}{{di < len(c.deferred), idxOr(c.deferred, di)}, {oi < len(c.obs), obsIdx(c.obs, oi)}, {ei < len(c.evs), evIdx(c.evs, ei)},
			{si < len(c.segs), segIdx(c.segs, si)}} {
			if x.ok && (next < 0 || x.idx < next) {
				next = x.idx
			}
		}
		if next < 0 {
			return
		}
		if di < len(c.deferred) && c.deferred[di] == next {
			p := &c.pkts[next]
			s.frag.Packet(p.lt, c.data[p.off:p.end], c.meta(next))
			di++
			continue
		}
		proof := evidence.ProofDatagram
		for ; oi < len(c.obs) && c.obs[oi].idx == next; oi++ {
			proof = s.frag.observe(&c.obs[oi].o)
		}
		for ; si < len(c.segs) && c.segs[si].idx == next; si++ {
			p := &c.pkts[next]
			s.frag.deferredSegment(&c.segs[si].s, c.data[p.off:p.end], c.meta(next), proof)
		}
		for ; ei < len(c.evs) && c.evs[ei].idx == next; ei++ {
			ev := c.evs[ei].ev
			switch {
			case ev.Proof == proofPending:
				ev.Proof = proof
			case ev.Proof == replyPending:
				// A server's reply: a line only when it answers a request
				// seen before it, in packet order.
				ev.Proof = evidence.ProofDatagram
				if s.frag.answers == nil || !s.frag.answers.answer(&ev) {
					continue
				}
				s.frag.stats.Events++
			case ev.Role == evidence.RoleRequester && ev.File != "":
				s.frag.asked(&ev) // its table is its own: nothing waits
			}
			s.rec.Record(ev)
		}
	}
}

func idxOr(d []int, i int) int {
	if i < len(d) {
		return d[i]
	}
	return 0
}

func obsIdx(o []chunkObs, i int) int {
	if i < len(o) {
		return o[i].idx
	}
	return 0
}

func segIdx(e []chunkSeg, i int) int {
	if i < len(e) {
		return e[i].idx
	}
	return 0
}

func evIdx(e []chunkEvent, i int) int {
	if i < len(e) {
		return e[i].idx
	}
	return 0
}
