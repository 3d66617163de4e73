package wire

import (
	"slices"
	"time"
)

// Defaults for the reassembly bounds in Options.
const (
	DefaultFragDatagrams = 256
	DefaultFragBytes     = 4 << 20
	DefaultFragTimeout   = 30 * time.Second
	// maxFragsPerDatagram bounds the pieces one datagram may arrive in: a
	// 64 KiB datagram in 8-byte pieces would be 8192 of them, which no
	// real sender produces and only an attacker would send.
	maxFragsPerDatagram = 64
	maxDatagram         = 65535
)

// fragKey names one datagram being reassembled (RFC 791: source,
// destination, protocol, identification; IPv6 has no protocol in the key
// but carries it in the first fragment, so it is 0 there).
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	v6       bool
}

type span struct{ off, end int }

type fragBuf struct {
	key   fragKey
	data  []byte
	spans []span
	total int // payload length, known once the last fragment arrived; -1 before
	born  time.Time
	proto uint8 // IPv6: the next header named by the first fragment
}

// defragmenter reassembles IPv4 and IPv6 fragments with bounded state: at
// most maxDatagrams in flight, at most maxBytes buffered, each for at most
// timeout of packet time. Past a bound the oldest datagram is dropped, so a
// fragment flood costs a fixed amount of memory. Overlapping fragments
// (other than exact repeats) drop their datagram, as Linux does since 4.19:
// an overlap is an evasion attempt, not traffic a worm sends.
type defragmenter struct {
	maxDatagrams int
	maxBytes     int
	timeout      time.Duration

	live   map[fragKey]*fragBuf
	free   []*fragBuf
	bytes  int
	lastGC time.Time

	stats *Stats
}

func newDefragmenter(maxDatagrams, maxBytes int, timeout time.Duration, st *Stats) *defragmenter {
	return &defragmenter{
		maxDatagrams: maxDatagrams,
		maxBytes:     maxBytes,
		timeout:      timeout,
		live:         make(map[fragKey]*fragBuf),
		stats:        st,
	}
}

// add takes one fragment: off is its byte offset, more its MF flag. When
// the datagram is complete it returns the whole payload (valid until the
// next call) and the protocol; otherwise nil.
func (d *defragmenter) add(k fragKey, off int, more bool, payload []byte, proto uint8, now time.Time) ([]byte, uint8) {
	d.stats.Fragments++
	d.expire(now)
	end := off + len(payload)
	if end > maxDatagram || (more && len(payload)%8 != 0) || (more && len(payload) == 0) {
		d.stats.FragDropped++
		if b := d.live[k]; b != nil {
			d.drop(b)
		}
		return nil, 0
	}
	b := d.live[k]
	if b == nil {
		for len(d.live) >= d.maxDatagrams {
			d.drop(d.oldest())
			d.stats.FragEvicted++
		}
		b = d.get()
		b.key = k
		b.total = -1
		b.born = now
		d.live[k] = b
	}
	if off == 0 {
		b.proto = proto
	}
	if !more {
		if b.total >= 0 && b.total != end {
			d.stats.FragDropped++
			d.drop(b)
			return nil, 0
		}
		b.total = end
	}
	if b.total >= 0 && end > b.total {
		d.stats.FragDropped++
		d.drop(b)
		return nil, 0
	}
	for _, s := range b.spans {
		if s.off == off && s.end == end {
			return nil, 0 // a repeat: keep what we have
		}
		if off < s.end && s.off < end {
			d.stats.FragDropped++
			d.drop(b)
			return nil, 0
		}
	}
	if len(b.spans) >= maxFragsPerDatagram {
		d.stats.FragDropped++
		d.drop(b)
		return nil, 0
	}
	if grow := end - len(b.data); grow > 0 {
		for d.bytes+grow > d.maxBytes && len(d.live) > 1 {
			o := d.oldestExcept(b)
			d.drop(o)
			d.stats.FragEvicted++
		}
		if d.bytes+grow > d.maxBytes {
			d.stats.FragDropped++
			d.drop(b)
			return nil, 0
		}
		b.data = slices.Grow(b.data[:len(b.data)], grow)[:end]
		d.bytes += grow
	}
	copy(b.data[off:end], payload)
	b.spans = append(b.spans, span{off, end})
	if b.total < 0 || !covered(b.spans, b.total) {
		return nil, 0
	}
	d.stats.Reassembled++
	// The buffer goes back to the free list but is not touched until the
	// next add, so the caller may use it until then.
	out, p := b.data[:b.total], b.proto
	if !k.v6 {
		p = k.proto
	}
	d.drop(b)
	return out, p
}

// covered reports whether spans (which never overlap) cover [0,total).
func covered(spans []span, total int) bool {
	n := 0
	for _, s := range spans {
		n += s.end - s.off
	}
	return n == total
}

func (d *defragmenter) get() *fragBuf {
	if n := len(d.free); n > 0 {
		b := d.free[n-1]
		d.free = d.free[:n-1]
		return b
	}
	return &fragBuf{spans: make([]span, 0, 8)}
}

func (d *defragmenter) drop(b *fragBuf) {
	delete(d.live, b.key)
	d.bytes -= len(b.data)
	b.data = b.data[:0]
	b.spans = b.spans[:0]
	b.proto = 0
	if len(d.free) < 16 {
		d.free = append(d.free, b)
	}
}

func (d *defragmenter) oldest() *fragBuf { return d.oldestExcept(nil) }

func (d *defragmenter) oldestExcept(not *fragBuf) *fragBuf {
	var o *fragBuf
	for _, b := range d.live {
		if b != not && (o == nil || b.born.Before(o.born)) {
			o = b
		}
	}
	return o
}

// expire drops datagrams older than the timeout, scanning at most once a
// second of packet time.
func (d *defragmenter) expire(now time.Time) {
	if len(d.live) == 0 || now.Sub(d.lastGC) < time.Second && !now.Before(d.lastGC) {
		return
	}
	d.lastGC = now
	for _, b := range d.live {
		if now.Sub(b.born) > d.timeout {
			d.drop(b)
			d.stats.FragExpired++
		}
	}
}
