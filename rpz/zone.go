package rpz

import (
	"encoding/binary"
	"hash/maphash"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"wormsink/signatures"
)

// zone is one version of the policy zone: the signature set it is generated
// from and the journal of changes that led to it. It is immutable (but for
// hashed, which only the reload loop touches); a reload builds a new one. Records are never all held as dns.RR: transfers
// generate them from the set as they stream.
type zone struct {
	origin   string // fully qualified, lower case
	set      *signatures.Set
	serial   uint32
	sinkhole []netip.Addr
	journal  []*delta // oldest first; journal[len-1].to == serial
	records  int      // records besides SOA and NS
	// recs are the records of a zone not generated from a signature set
	// (set nil): the walled garden's small zones.
	recs []record
	// addOnlyIXFR: IXFR carries only additions; a change that removes
	// records is sent as the whole zone. Unbound (1.17) applies the
	// removal of a client-IP trigger by IXFR but keeps enforcing it until
	// it loads the zone whole; the garden zone is small.
	addOnlyIXFR bool
	skipped     int // listed names too long to fit under origin

	// seed and hashed: the sorted record hashes, kept from the diff that
	// made this zone so the next diff hashes only the new zone.
	seed   maphash.Seed
	hashed []uint64
}

// delta is the change from one serial to the next, packed: each record is
// uvarint owner length, owner, policy byte, and 4 or 16 address bytes for
// local data. A million changed names cost about 30 MB, not a million RRs.
type delta struct {
	from, to uint32
	del, add []byte
	nDel     int
	nAdd     int
}

func (d *delta) size() int { return len(d.del) + len(d.add) }

// policy is what one record of the zone says about its owner.
type policy uint8

const (
	polNXDomain  policy = iota // CNAME .
	polNoData                  // CNAME *.
	polLocalData               // A or AAAA with a sinkhole address
	polPassthru                // CNAME rpz-passthru.: answer as if no policy applied
)

// record is one policy record as the primary streams and journals it.
type record struct {
	Owner  string // relative to the origin
	Policy policy
	Addr   netip.Addr // polLocalData
}

// options are the export's rules for this zone: the same records as
// `sigs export --format rpz --zone` writes.
func (z *zone) options() signatures.RPZOptions {
	return signatures.RPZOptions{Sinkhole: z.sinkhole, Zone: strings.TrimSuffix(z.origin, ".")}
}

// each yields the zone's policy records (no SOA, no NS) from the one
// generator the file export uses too; names it leaves out are skipped.
func (z *zone) each(yield func(record) bool) {
	if z.set == nil {
		for _, r := range z.recs {
			if !yield(r) {
				return
			}
		}
		return
	}
	stopped := false
	signatures.RPZRecords(z.set, z.options(), func(r signatures.RPZRecord) {
		if stopped || r.Skip != "" {
			return
		}
		x, ok := toRecord(r)
		if ok && !yield(x) {
			stopped = true // the generator runs on; nothing more is yielded
		}
	})
}

func toRecord(r signatures.RPZRecord) (record, bool) {
	x := record{Owner: r.Owner}
	switch {
	case r.Type == "CNAME" && r.Data == ".":
		x.Policy = polNXDomain
	case r.Type == "CNAME" && r.Data == "*.":
		x.Policy = polNoData
	case r.Type == "A" || r.Type == "AAAA":
		a, err := netip.ParseAddr(r.Data)
		if err != nil {
			return x, false
		}
		x.Policy, x.Addr = polLocalData, a
	default:
		return x, false
	}
	return x, true
}

func newZone(origin string, set *signatures.Set, sinkhole []netip.Addr) *zone {
	z := &zone{origin: origin, set: set, serial: signatures.RPZSerial(set), sinkhole: sinkhole}
	signatures.RPZRecords(set, z.options(), func(r signatures.RPZRecord) {
		if r.Skip != "" {
			z.skipped++
		} else {
			z.records++
		}
	})
	return z
}

// newStaticZone is a zone of the given records at serial.
func newStaticZone(origin string, serial uint32, recs []record) *zone {
	return &zone{origin: origin, serial: serial, recs: recs, records: len(recs)}
}

func (z *zone) soa() *dns.SOA {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: z.origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: signatures.RPZTTL},
		Ns:  signatures.RPZNS, Mbox: signatures.RPZMbox, Serial: z.serial,
		Refresh: signatures.RPZRefresh, Retry: signatures.RPZRetry, Expire: signatures.RPZExpire, Minttl: signatures.RPZMinTTL,
	}
}

func (z *zone) ns() *dns.NS {
	return &dns.NS{Hdr: dns.RR_Header{Name: z.origin, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: signatures.RPZTTL}, Ns: signatures.RPZNS}
}

// rrMaker turns policy records into dns.RRs under one origin, sharing the
// address slices between records.
type rrMaker struct {
	origin string
	ips    map[netip.Addr]net.IP
}

func newRRMaker(origin string) *rrMaker {
	return &rrMaker{origin: origin, ips: map[netip.Addr]net.IP{}}
}

func (m *rrMaker) rr(owner string, p policy, addr netip.Addr) dns.RR {
	hdr := dns.RR_Header{Name: owner + "." + m.origin, Class: dns.ClassINET, Ttl: signatures.RPZTTL}
	switch p {
	case polNXDomain:
		hdr.Rrtype = dns.TypeCNAME
		return &dns.CNAME{Hdr: hdr, Target: "."}
	case polNoData:
		hdr.Rrtype = dns.TypeCNAME
		return &dns.CNAME{Hdr: hdr, Target: "*."}
	case polPassthru:
		hdr.Rrtype = dns.TypeCNAME
		return &dns.CNAME{Hdr: hdr, Target: "rpz-passthru."}
	}
	ip, ok := m.ips[addr]
	if !ok {
		ip = net.IP(addr.AsSlice())
		m.ips[addr] = ip
	}
	if addr.Is4() {
		hdr.Rrtype = dns.TypeA
		return &dns.A{Hdr: hdr, A: ip}
	}
	hdr.Rrtype = dns.TypeAAAA
	return &dns.AAAA{Hdr: hdr, AAAA: ip}
}

// appendPacked adds one record to a delta's byte form.
func appendPacked(b []byte, r record) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.Owner)))
	b = append(b, r.Owner...)
	b = append(b, byte(r.Policy))
	if r.Policy == polLocalData {
		if r.Addr.Is4() {
			a := r.Addr.As4()
			b = append(b, 4)
			b = append(b, a[:]...)
		} else {
			a := r.Addr.As16()
			b = append(b, 16)
			b = append(b, a[:]...)
		}
	}
	return b
}

// eachPacked reads back what appendPacked wrote.
func eachPacked(b []byte, yield func(owner string, p policy, addr netip.Addr) bool) {
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		b = b[k:]
		owner := string(b[:n])
		b = b[n:]
		p := policy(b[0])
		b = b[1:]
		var addr netip.Addr
		if p == polLocalData {
			l := int(b[0])
			addr, _ = netip.AddrFromSlice(b[1 : 1+l])
			b = b[1+l:]
		}
		if !yield(owner, p, addr) {
			return
		}
	}
}

// hashes returns the sorted hashes of a zone's records: 8 bytes a record is
// what diffing two million-name zones holds, instead of the records.
func (z *zone) hashes(seed maphash.Seed) []uint64 {
	out := make([]uint64, 0, z.records)
	var h maphash.Hash
	h.SetSeed(seed)
	for r := range z.each {
		out = append(out, recordHash(&h, r))
	}
	slices.Sort(out)
	return out
}

func recordHash(h *maphash.Hash, r record) uint64 {
	h.Reset()
	h.WriteString(r.Owner)
	h.WriteByte(byte(r.Policy))
	if r.Policy == polLocalData {
		a := r.Addr.As16()
		h.Write(a[:])
	}
	return h.Sum64()
}

// only returns the hashes of a that are not in b (both sorted).
func only(a, b []uint64) []uint64 {
	var out []uint64
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			continue
		}
		out = append(out, x)
	}
	return out
}

// diff computes the change from old to next. Records are compared by a
// 64-bit hash: two different records colliding is a one in 10^7 chance
// even for two million-record zones, and would only leave one stale
// record until the next AXFR.
func diff(old, next *zone) *delta {
	seed := old.seed
	oh := old.hashed
	if oh == nil {
		seed = maphash.MakeSeed()
		oh = old.hashes(seed)
	}
	nh := next.hashes(seed)
	next.seed, next.hashed = seed, nh
	delH, addH := only(oh, nh), only(nh, oh)
	old.hashed = nil // only the newest zone's are kept
	oh = nil
	d := &delta{from: old.serial, to: next.serial}
	pick := func(z *zone, want []uint64, buf *[]byte, n *int) {
		if len(want) == 0 {
			return
		}
		var h maphash.Hash
		h.SetSeed(seed)
		for r := range z.each {
			if _, ok := slices.BinarySearch(want, recordHash(&h, r)); ok {
				*buf = appendPacked(*buf, r)
				*n++
			}
		}
	}
	pick(old, delH, &d.del, &d.nDel)
	pick(next, addH, &d.add, &d.nAdd)
	return d
}

// MaxJournalBytes bounds the memory the IXFR journal holds; the oldest
// deltas go first. A secondary older than the journal gets AXFR.
const MaxJournalBytes = 64 << 20

// successor builds the zone that follows z for set, carrying the journal
// forward. keep is how many deltas to hold.
func (z *zone) successor(set *signatures.Set, keep int) *zone {
	return z.followedBy(newZone(z.origin, set, z.sinkhole), keep)
}

// followedBy gives next the journal of z plus the change from z to next.
func (z *zone) followedBy(next *zone, keep int) *zone {
	if next.serial == z.serial || keep <= 0 {
		// Same serial, new content: secondaries cannot learn of it, and
		// deltas ending at this serial would now be wrong. Start over.
		return next
	}
	d := diff(z, next)
	j := append(slices.Clone(z.journal), d)
	total := 0
	for i := len(j) - 1; i >= 0; i-- {
		total += j[i].size()
		if total > MaxJournalBytes || len(j)-i > keep {
			j = j[i+1:]
			break
		}
	}
	next.journal = j
	return next
}

// since returns the deltas that take a secondary at serial from to the
// zone's serial, or false when the journal does not reach back that far.
func (z *zone) since(from uint32) ([]*delta, bool) {
	for i, d := range z.journal {
		if d.from == from {
			if z.addOnlyIXFR && slices.ContainsFunc(z.journal[i:], func(d *delta) bool { return d.nDel > 0 }) {
				return nil, false
			}
			return z.journal[i:], true
		}
	}
	return nil, false
}
