package report

import (
	"bytes"
	"encoding/binary"
	"iter"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// Filter selects the sightings a report counts. The zero value takes all.
type Filter struct {
	Since, Until time.Time // zero: unbounded
	// Families keeps only sightings of these families (case-insensitive);
	// empty keeps all.
	Families []string
	// StrongOnly lists only hosts with strong evidence (their rows still
	// count their weak sightings); otherwise every host is listed.
	StrongOnly bool
	// VerifiedOnly lists only hosts with a proof better than a lone
	// datagram (xarf, shadowserver without --include-unverified): a forged
	// source address must not get a customer a complaint.
	VerifiedOnly bool

	// Exclude drops sightings of hosts in these networks (the sinkhole's
	// own addresses, a partner's range), and network lines wholly inside
	// one of them.
	Exclude []netip.Prefix
}

// EvidenceStrong is the strength that proves an infection.
const EvidenceStrong = signatures.Strong

// Keep reports whether a sighting passes the time and family filter. A
// folded line counts whole when its span [Time, Last] overlaps the window:
// its count cannot be split.
func (f *Filter) Keep(r *Sighting) bool {
	if !f.Since.IsZero() && r.Last.Before(f.Since) {
		return false
	}
	if len(f.Exclude) > 0 && f.excluded(r) {
		return false
	}
	if !r.Network.IsValid() && r.Host.IsValid() && !evidence.IsHost(r.Host) {
		return false // unspecified, broadcast, multicast: no one to notify
	}
	if !f.Until.IsZero() && r.Time.After(f.Until) {
		return false
	}
	if len(f.Families) > 0 {
		for _, fam := range f.Families {
			if bytes.EqualFold(r.Family, []byte(fam)) {
				return true
			}
		}
		return false
	}
	return true
}

// unmapPrefixes returns ps with each IPv4-mapped prefix as its IPv4
// network, as hosts are compared (see evidence.UnmapPrefix); one that is
// no IPv4 network stays as it is and matches no IPv4 host.
func unmapPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if u, ok := evidence.UnmapPrefix(p); ok {
			p = u
		}
		out = append(out, p)
	}
	return out
}

func (f *Filter) excluded(r *Sighting) bool {
	for _, p := range f.Exclude {
		if r.Network.IsValid() {
			if p.Bits() <= r.Network.Bits() && p.Contains(r.Network.Addr()) {
				return true
			}
		} else if p.Contains(r.Host.Unmap()) {
			return true
		}
	}
	return false
}

// Sources counts sightings by where they were made.
type Sources struct {
	DNS  uint64 `json:"dns"`  // dns_sinkhole, dns_lookup
	TFTP uint64 `json:"tftp"` // tftp_refused, tftp_request
	Wire uint64 `json:"wire"` // wire_match
}

// HostSummary is one row of the report: everything the logs say about one
// host. Rows from one Aggregator may share their name slices: read them,
// never modify them.
type HostSummary struct {
	Host       netip.Addr
	FirstSeen  time.Time
	LastSeen   time.Time
	FirstPort  uint16 // source port of the first sighting
	LastPort   uint16 // source port of the last sighting (for CGNAT look-ups)
	Events     uint64 // sum of counts
	Evidence   signatures.Strength
	Families   []string // sorted
	Signatures []string // sorted
	Sources    Sources
	Sensors    []string       // sorted
	Proof      evidence.Proof // the best proof of any of its sightings
	// Subscribers the lines named for this host (attribution), sorted: more
	// than one when the address moved between subscribers.
	Subscribers []string
}

// hostAgg is the per-host state while reading: 64 bytes, one cache line,
// with the family, signature and sensor sets as bitmasks of interned ids.
// Memory grows with hosts, never with lines; and since every line touches
// its host's state at random, keeping that state small is what keeps the
// report fast.
type hostAgg struct {
	first, last         int64 // unix nanoseconds
	src                 [3]uint64
	fams, sigs, sensors uint32 // bit i: id i of that kind, for ids below 32
	// subs is the id+1 of the host's first subscriber, 0 for none: an
	// address mostly names one subscriber, and subscribers are as many as
	// hosts, so a bitmask of the first 32 would hold almost none of them.
	// Any other subscriber is in Aggregator.extra.
	subs                uint32
	firstPort, lastPort uint16
	evidence            signatures.Strength
	hasExtra            bool           // ids from 32 on are in Aggregator.extra
	proof               evidence.Proof // the best so far
}

// name kinds
const (
	kindFamily = iota
	kindSig
	kindSensor
	kindSubscriber
	numKinds
)

const maskIDs = 32

// Aggregator folds records into per-host rows, and optionally a timeline of
// sightings per family for the HTML page.
type Aggregator struct {
	filter Filter
	v4     v4Index               // IPv4 hosts → index into aggs
	v6     v6Index               // IPv6 hosts without a zone
	other  map[netip.Addr]uint32 // every other host (with a zone)
	aggs   blocks[hostAgg]
	addrs  blocks[netip.Addr]
	// extraSeen holds every (agg index, kind<<30|id) of names a host's
	// row has no bit for (ids from maskIDs on, second subscribers), so
	// that a line repeating one costs one probe of a flat table. Logs of
	// many sensors add them on most lines: a list per host appended to
	// while reading cost an allocation each and the GC's time.
	extraSeen u64Set
	extras    extraLists         // extraSeen by host, made when rows are (see listExtras)
	names     [numKinds]interner // families, signatures, sensors, subscribers
	timeline  *Timeline
	kept      uint64 // sightings counted

	nets map[netip.Prefix]*netAgg // network lines (the writer's line budget was spent)

	// A parallel read's worker notes, per host, the chunk of the line that
	// set first and last: merged workers break ties of equal times the way
	// one reader in file order does (see merge).
	pos   *blocks[aggPos] // nil when reading alone
	chunk uint32          // the chunk being read
	// workers is how many goroutines sort and format the rows: those that
	// read the logs (ParallelReader sets it), else one.
	workers int
	sink    uint64 // keeps addBatch's warming loads from being optimised away
}

// NetworkSummary is what the logs say about one network whose sightings the
// evidence writer folded into network lines because its line budget was
// spent (a flood, perhaps of forged sources). It is not a host: nobody in
// it is shown to be infected, only that sightings came from it.
type NetworkSummary struct {
	Network    netip.Prefix
	FirstSeen  time.Time
	LastSeen   time.Time
	Events     uint64 // sum of counts
	Evidence   signatures.Strength
	Families   []string // sorted
	Signatures []string // sorted
	Sources    Sources
	Sensors    []string // sorted
}

// netAgg is a network's state while reading; network lines are few (the
// writer bounds them), so plain sets do.
type netAgg struct {
	first, last         int64
	src                 [3]uint64
	evidence            signatures.Strength
	fams, sigs, sensors map[string]struct{}
}

// aggPos is where a host's first and last sightings came from.
type aggPos struct{ first, last uint32 }

// NewAggregator returns an empty aggregator applying f. With timeline set
// it also bins sightings over time per family.
func NewAggregator(f Filter, timeline bool) *Aggregator {
	f.Exclude = unmapPrefixes(f.Exclude)
	a := &Aggregator{filter: f, other: make(map[netip.Addr]uint32)}
	for i := range a.names {
		a.names[i].ids = make(map[string]uint32)
	}
	if timeline {
		a.timeline = newTimeline()
	}
	return a
}

// Add counts one record if the filter keeps it.
func (a *Aggregator) Add(r *Sighting) {
	if !a.filter.Keep(r) {
		return
	}
	first, last := r.Time.UnixNano(), r.Last.UnixNano()
	if s := a.filter.Since; !s.IsZero() && first < s.UnixNano() {
		first = s.UnixNano()
	}
	if u := a.filter.Until; !u.IsZero() && last > u.UnixNano() {
		last = u.UnixNano()
	}
	if r.Network.IsValid() {
		a.addNetwork(r, first, last)
		return
	}
	i, ok := a.lookup(r.Host)
	if !ok {
		i = uint32(a.aggs.len())
		a.insert(r.Host, i)
		a.aggs.push(hostAgg{first: first, last: last, firstPort: r.Port, lastPort: r.Port, evidence: r.Evidence, proof: r.Proof})
		a.addrs.push(r.Host)
		if a.pos != nil {
			a.pos.push(aggPos{a.chunk, a.chunk})
		}
	}
	h := a.aggs.at(i)
	if first < h.first {
		h.first, h.firstPort = first, r.Port
		if a.pos != nil {
			a.pos.at(i).first = a.chunk
		}
	}
	if last >= h.last {
		h.last, h.lastPort = last, r.Port
		if a.pos != nil {
			a.pos.at(i).last = a.chunk
		}
	}
	if r.Evidence < h.evidence { // Strong is the smaller value
		h.evidence = r.Evidence
	}
	if r.Proof > h.proof { // a larger Proof is stronger
		h.proof = r.Proof
	}
	h.src[sourceOf(r.Kind)] = addSat(h.src[sourceOf(r.Kind)], r.Count)
	fam := uint32(0)
	if len(r.Family) > 0 {
		fam = a.names[kindFamily].id(r.Family)
		a.mark(h, i, &h.fams, kindFamily, fam)
	}
	if len(r.Sig) > 0 {
		a.mark(h, i, &h.sigs, kindSig, a.names[kindSig].id(r.Sig))
	}
	if len(r.Sensor) > 0 {
		a.mark(h, i, &h.sensors, kindSensor, a.names[kindSensor].id(r.Sensor))
	}
	if len(r.Subscriber) > 0 {
		addSub(a, h, i, r.Subscriber)
	}
	a.kept = addSat(a.kept, r.Count)
	if a.timeline != nil {
		if len(r.Family) == 0 {
			fam = a.names[kindFamily].id(nil)
		}
		a.timeline.add(fam, first, last, r.Count)
	}
}

// addBatch adds rs (at most addBatch of them) in order, as Add does one
// by one, warming their hosts' state first.
func (a *Aggregator) addBatch(rs []Sighting) {
	if len(rs) > 1 {
		var hosts [addBatch]netip.Addr
		for k := range rs {
			hosts[k] = rs[k].Host
		}
		a.warm(hosts[:len(rs)])
	}
	for k := range rs {
		a.Add(&rs[k])
	}
}

// warm reads the index slots of hosts (IPv4), then their rows and
// positions, in loops of independent loads, so that the CPU waits for
// all those cache misses at once rather than for one per host.
func (a *Aggregator) warm(hosts []netip.Addr) {
	if len(a.v4.slots) == 0 && len(a.v6.slots) == 0 {
		return
	}
	var sink uint64
	for _, h := range hosts {
		switch {
		case h.Is4():
			if len(a.v4.slots) > 0 {
				sink += a.v4.slots[a.v4.hash(v4Key(h))]
			}
		case len(a.v6.slots) > 0 && h.Zone() == "":
			sink += a.v6.slots[a.v6.hash(v6Key(h))].k[1]
		}
	}
	for _, h := range hosts {
		if i, ok := a.lookup(h); ok {
			sink += uint64(a.aggs.at(i).first)
			if a.pos != nil {
				sink += uint64(a.pos.at(i).last) // set by most lines of a log in time order
			}
		}
	}
	a.sink = sink
}

func (a *Aggregator) addNetwork(r *Sighting, first, last int64) {
	if a.nets == nil {
		a.nets = make(map[netip.Prefix]*netAgg)
	}
	n := a.nets[r.Network]
	if n == nil {
		n = &netAgg{first: first, last: last, evidence: r.Evidence,
			fams: map[string]struct{}{}, sigs: map[string]struct{}{}, sensors: map[string]struct{}{}}
		a.nets[r.Network] = n
	}
	n.first, n.last = min(n.first, first), max(n.last, last)
	n.evidence = min(n.evidence, r.Evidence) // Strong is the smaller value
	n.src[sourceOf(r.Kind)] = addSat(n.src[sourceOf(r.Kind)], r.Count)
	for _, x := range []struct {
		set map[string]struct{}
		v   []byte
	}{{n.fams, r.Family}, {n.sigs, r.Sig}, {n.sensors, r.Sensor}} {
		if _, ok := x.set[string(x.v)]; !ok && len(x.v) > 0 {
			x.set[string(x.v)] = struct{}{}
		}
	}
	a.kept = addSat(a.kept, r.Count)
	if a.timeline != nil {
		a.timeline.add(a.names[kindFamily].id(r.Family), first, last, r.Count)
	}
}

// Networks returns the networks of network lines that pass the evidence
// filter, ordered as hosts are. They are not hosts and are not in Hosts.
func (a *Aggregator) Networks() []NetworkSummary {
	out := make([]NetworkSummary, 0, len(a.nets))
	for p, n := range a.nets {
		if a.filter.StrongOnly && n.evidence != signatures.Strong {
			continue
		}
		out = append(out, NetworkSummary{
			Network: p, FirstSeen: time.Unix(0, n.first).UTC(), LastSeen: time.Unix(0, n.last).UTC(),
			Events: sumSources(&n.src), Evidence: n.evidence,
			Families: setNames(n.fams), Signatures: setNames(n.sigs), Sensors: setNames(n.sensors),
			Sources: Sources{DNS: n.src[0], TFTP: n.src[1], Wire: n.src[2]},
		})
	}
	slices.SortFunc(out, func(x, y NetworkSummary) int {
		if x.Evidence != y.Evidence {
			return int(x.Evidence) - int(y.Evidence)
		}
		if x.Events != y.Events {
			if x.Events > y.Events {
				return -1
			}
			return 1
		}
		if c := x.Network.Addr().Compare(y.Network.Addr()); c != 0 {
			return c
		}
		return x.Network.Bits() - y.Network.Bits()
	})
	return out
}

// NetworkSightings returns the sightings counted in network lines (all of
// them, before the evidence filter).
func (a *Aggregator) NetworkSightings() uint64 {
	var n uint64
	for _, x := range a.nets {
		n = addSat(n, sumSources(&x.src))
	}
	return n
}

func setNames(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b string) int {
		if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return out
}

func (a *Aggregator) lookup(addr netip.Addr) (uint32, bool) {
	if addr.Is4() {
		return a.v4.get(v4Key(addr))
	}
	if addr.Zone() == "" {
		return a.v6.get(v6Key(addr))
	}
	i, ok := a.other[addr]
	return i, ok
}

func (a *Aggregator) insert(addr netip.Addr, i uint32) {
	if addr.Is4() {
		a.v4.put(v4Key(addr), i)
		return
	}
	if addr.Zone() == "" {
		a.v6.put(v6Key(addr), i)
		return
	}
	a.other[addr] = i
}

func v6Key(addr netip.Addr) [2]uint64 {
	b := addr.As16()
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// v6Index is v4Index for IPv6 addresses: a Go map keyed by netip.Addr
// hashes 24 bytes and compares a zone pointer per look-up.
type v6Index struct {
	slots []v6Slot
	n     int
	shift uint
}

type v6Slot struct {
	k   [2]uint64
	idx uint32 // index+1; 0 is empty
}

func (t *v6Index) hash(k [2]uint64) uint64 {
	return ((k[0]^bits.RotateLeft64(k[1], 31))*0x9E3779B97F4A7C15 ^ k[1]) * 0xBF58476D1CE4E5B9 >> t.shift
}

func (t *v6Index) get(k [2]uint64) (uint32, bool) {
	if t.slots == nil {
		return 0, false
	}
	mask := uint64(len(t.slots) - 1)
	for p := t.hash(k); ; p = (p + 1) & mask {
		s := &t.slots[p]
		if s.idx == 0 {
			return 0, false
		}
		if s.k == k {
			return s.idx - 1, true
		}
	}
}

func (t *v6Index) put(k [2]uint64, i uint32) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	p := t.hash(k)
	for t.slots[p].idx != 0 {
		p = (p + 1) & mask
	}
	t.slots[p] = v6Slot{k: k, idx: i + 1}
	t.n++
}

func (t *v6Index) grow() {
	old := t.slots
	size := 256
	if len(old) > 0 {
		size = 2 * len(old)
	}
	t.slots = make([]v6Slot, size)
	t.shift = uint(64 - bits.TrailingZeros(uint(size)))
	t.n = 0
	for _, s := range old {
		if s.idx != 0 {
			t.put(s.k, s.idx-1)
		}
	}
}

func v4Key(addr netip.Addr) uint32 {
	b := addr.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (a *Aggregator) mark(h *hostAgg, i uint32, set *uint32, kind int, id uint32) {
	if id < maskIDs {
		*set |= 1 << id
		return
	}
	a.markExtra(h, i, kind, id)
}

// addSub adds subscriber name to host i's subscribers. The host's
// first is kept by its own id, never looked up: subscribers are about as
// many as hosts, so interning each through a map (and sorting them all
// for display) cost more than the rest of a million-host report's
// bookkeeping. The host's own subscriber again, the common case, is
// compared in place; another one is interned and goes to the extras, so
// that it is counted once.
// A name from another aggregator (a merge) comes as a string, kept
// without a copy.
func addSub[S string | []byte](a *Aggregator, h *hostAgg, i uint32, name S) {
	sn := &a.names[kindSubscriber]
	switch {
	case h.subs == 0:
		sn.names = append(sn.names, string(name))
		h.subs = uint32(len(sn.names))
	case sn.names[h.subs-1] != string(name):
		a.markExtra(h, i, kindSubscriber, sn.id([]byte(name)))
	}
}

func (a *Aggregator) markExtra(h *hostAgg, i uint32, kind int, id uint32) {
	x := uint32(kind)<<30 | id
	if a.extraSeen.add(uint64(i)<<32 | uint64(x)) {
		h.hasExtra = true
	}
}

// namesOf returns the sorted names of one kind in a host's sets. Hosts
// with the same set of low ids share one slice through sets (hosts are
// many, sets few).
func (a *Aggregator) namesOf(i uint32, set uint32, kind int, sets map[uint32][]string) []string {
	if a.aggs.at(i).hasExtra {
		return a.namesOfIDs(i, set, kind)
	}
	names, ok := sets[set]
	if !ok {
		names = a.namesOfIDs(i, set, kind)
		sets[set] = names
	}
	return names
}

// subsOf returns the sorted subscribers of host i, whose first is sub,
// in buf's array when buf is not nil. They are sorted here, not ranked
// among all subscribers (as families are): a host has a few, the log
// perhaps a million.
func (a *Aggregator) subsOf(i uint32, sub uint32, buf []string) []string {
	names := a.names[kindSubscriber].names
	out := append(buf[:0], names[sub-1])
	if !a.aggs.at(i).hasExtra {
		return out
	}
	for _, x := range a.extras.of(i) {
		if int(x>>30) == kindSubscriber {
			out = append(out, names[x&(1<<30-1)])
		}
	}
	slices.SortFunc(out, compareNames)
	return out
}

// compareNames is the display order of names: case-insensitive, then
// exact.
func compareNames(a, b string) int {
	if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func (a *Aggregator) namesOfIDs(i uint32, set uint32, kind int) []string {
	var ids []uint32
	for set != 0 {
		b := bits.TrailingZeros32(set)
		ids = append(ids, uint32(b))
		set &^= 1 << b
	}
	if a.aggs.at(i).hasExtra {
		for _, x := range a.extras.of(i) {
			if int(x>>30) == kind {
				ids = append(ids, x&(1<<30-1))
			}
		}
	}
	return a.names[kind].sorted(ids)
}

// v4Index maps IPv4 addresses to host indexes: open addressing with linear
// probing over 8-byte slots (address, index+1), so the table for 100,000
// hosts is 2 MB and a look-up mostly stays in cache, where a Go map keyed
// by netip.Addr would take 32 bytes a slot.
type v4Index struct {
	slots []uint64 // key<<32 | index+1; 0 is empty
	n     int
	shift uint
}

func (t *v4Index) hash(k uint32) uint64 {
	return (uint64(k) * 0x9E3779B97F4A7C15) >> t.shift
}

func (t *v4Index) get(k uint32) (uint32, bool) {
	if t.slots == nil {
		return 0, false
	}
	mask := uint64(len(t.slots) - 1)
	for p := t.hash(k); ; p = (p + 1) & mask {
		s := t.slots[p]
		if s == 0 {
			return 0, false
		}
		if uint32(s>>32) == k {
			return uint32(s) - 1, true
		}
	}
}

func (t *v4Index) put(k, i uint32) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	p := t.hash(k)
	for t.slots[p] != 0 {
		p = (p + 1) & mask
	}
	t.slots[p] = uint64(k)<<32 | uint64(i+1)
	t.n++
}

func (t *v4Index) grow() {
	old := t.slots
	size := 1024
	if len(old) > 0 {
		size = 2 * len(old)
	}
	t.slots = make([]uint64, size)
	t.shift = uint(64 - bits.TrailingZeros(uint(size)))
	t.n = 0
	for _, s := range old {
		if s != 0 {
			t.put(uint32(s>>32), uint32(s)-1)
		}
	}
}

// u64Set is a set of uint64 keys as a flat open-addressed table:
// one probe, mostly one cache line, per look-up.
type u64Set struct {
	slots []uint64 // key+1; 0 is empty
	n     int
	shift uint
}

// add inserts k and reports whether it was new. k must not be MaxUint64.
func (t *u64Set) add(k uint64) bool {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	k++
	mask := uint64(len(t.slots) - 1)
	for p := (k * 0x9E3779B97F4A7C15) >> t.shift; ; p = (p + 1) & mask {
		switch t.slots[p] {
		case k:
			return false
		case 0:
			t.slots[p] = k
			t.n++
			return true
		}
	}
}

func (t *u64Set) grow() {
	old := t.slots
	size := 1024
	if len(old) > 0 {
		size = 2 * len(old)
	}
	t.slots = make([]uint64, size)
	t.shift = uint(64 - bits.TrailingZeros(uint(size)))
	t.n = 0
	for _, s := range old {
		if s != 0 {
			t.add(s - 1)
		}
	}
}

// extraLists lists the pairs of an extraSeen by host: host i's are
// list[start[i]:start[i+1]] (kind<<30|id each).
type extraLists struct {
	start []uint32
	list  []uint32
	made  int // extraSeen.n when made
}

func (e *extraLists) of(i uint32) []uint32 {
	if int(i)+1 >= len(e.start) {
		return nil
	}
	return e.list[e.start[i]:e.start[i+1]]
}

// listExtras makes a.extras from a.extraSeen, unless it is up to date.
// Call it before rows are made (on one goroutine) and before a merge
// reads the extras.
func (a *Aggregator) listExtras() {
	n := a.extraSeen.n
	if n == 0 || len(a.extras.start) == a.aggs.len()+1 && a.extras.made == n {
		return
	}
	start := make([]uint32, a.aggs.len()+2)
	for _, s := range a.extraSeen.slots {
		if s != 0 {
			start[(s-1)>>32+2]++
		}
	}
	for i := 2; i < len(start); i++ {
		start[i] += start[i-1]
	}
	list := make([]uint32, n)
	for _, s := range a.extraSeen.slots {
		if s != 0 {
			i := (s - 1) >> 32
			list[start[i+1]] = uint32(s - 1)
			start[i+1]++
		}
	}
	a.extras = extraLists{start: start[:len(start)-1], list: list, made: n}
}

func sourceOf(k evidence.Kind) int {
	switch k {
	case evidence.DNSSinkhole, evidence.DNSLookup:
		return 0
	case evidence.TFTPRefused, evidence.TFTPRequest:
		return 1
	}
	return 2
}

// Sightings returns the sum of counts the filter kept (before the evidence
// filter, which applies to hosts).
func (a *Aggregator) Sightings() uint64 { return a.kept }

// Hosts returns the report rows: hosts passing the evidence and proof
// filters, in SortHosts order.
func (a *Aggregator) Hosts() []HostSummary {
	keys := a.sortedHosts()
	out := make([]HostSummary, 0, len(keys))
	for h := range a.rows(keys, false) {
		out = append(out, *h)
	}
	return out
}

// EachHost yields the rows Hosts returns, in the same order, one at a
// time and in the same HostSummary (copy what you keep): a report of a
// million hosts then needs no slice of a million rows.
func (a *Aggregator) EachHost(yield func(*HostSummary) bool) {
	a.rows(a.sortedHosts(), false)(yield)
}

// rows yields the rows of keys in their order, in one HostSummary; with
// reuse, its slices too may be reused for the next row (see fillRow).
func (a *Aggregator) rows(keys []hostKey, reuse bool) iter.Seq[*HostSummary] {
	a.listExtras()
	return func(yield func(*HostSummary) bool) {
		sets := newNameSets()
		var row HostSummary
		var subs *[]string
		if reuse {
			subs = new([]string)
		}
		for i := range keys {
			if i%addBatch == 0 {
				// The rows are in report order, the state in reading
				// order: read a batch ahead so the cache misses overlap.
				var sink uint64
				for _, k := range keys[i:min(i+addBatch, len(keys))] {
					sink += uint64(a.aggs.at(k.idx).first)
				}
				a.sink = sink
			}
			a.fillRow(&row, &keys[i], &sets, subs)
			if !yield(&row) {
				return
			}
		}
	}
}

// hostKey is what SortHosts orders rows by, and where the host's state
// is: sorting these small keys moves far fewer bytes than sorting rows.
type hostKey struct {
	events   uint64
	addr     netip.Addr
	idx      uint32
	evidence signatures.Strength
	proof    evidence.Proof
}

// sortedHosts returns the keys of the hosts passing the filters, in
// SortHosts order.
func (a *Aggregator) sortedHosts() []hostKey {
	keys := make([]hostKey, 0, a.aggs.len())
	for i := range uint32(a.aggs.len()) {
		h := a.aggs.at(i)
		if a.filter.StrongOnly && h.evidence != signatures.Strong {
			continue
		}
		if a.filter.VerifiedOnly && !h.proof.Verified() {
			continue
		}
		keys = append(keys, hostKey{events: sumSources(&h.src), addr: *a.addrs.at(i), idx: i, evidence: h.evidence, proof: h.proof})
	}
	sortHostKeys(keys, a.workers)
	return keys
}

type nameSets [numKinds]map[uint32][]string

func newNameSets() nameSets {
	var s nameSets
	for k := range s {
		s[k] = make(map[uint32][]string)
	}
	return s
}

// fillRow sets row to the summary of k's host. With subs set, the row's
// subscribers are put in *subs's array, kept for the next row: for rows
// formatted and dropped, where a slice per row was an allocation per
// host.
func (a *Aggregator) fillRow(row *HostSummary, k *hostKey, sets *nameSets, subs *[]string) {
	i := k.idx
	h := a.aggs.at(i)
	*row = HostSummary{
		Host:       k.addr,
		FirstSeen:  time.Unix(0, h.first).UTC(),
		LastSeen:   time.Unix(0, h.last).UTC(),
		FirstPort:  h.firstPort,
		LastPort:   h.lastPort,
		Events:     sumSources(&h.src),
		Evidence:   h.evidence,
		Families:   a.namesOf(i, h.fams, kindFamily, sets[kindFamily]),
		Signatures: a.namesOf(i, h.sigs, kindSig, sets[kindSig]),
		Sources:    Sources{DNS: h.src[0], TFTP: h.src[1], Wire: h.src[2]},
		Sensors:    a.namesOf(i, h.sensors, kindSensor, sets[kindSensor]),
		Proof:      h.proof,
	}
	if h.subs != 0 {
		// nil when none: most logs have no attribution
		var buf []string
		if subs != nil {
			buf = *subs
		}
		row.Subscribers = a.subsOf(i, h.subs, buf)
		if subs != nil {
			*subs = row.Subscribers
		}
	}
}

// SortHosts orders rows as the report does: strongest evidence first, then
// best proof, then most events, then host address.
func SortHosts(rows []HostSummary) {
	slices.SortFunc(rows, func(x, y HostSummary) int {
		return compareHosts(x.Evidence, y.Evidence, x.Proof, y.Proof, x.Events, y.Events, x.Host, y.Host)
	})
}

func compareHosts(ex, ey signatures.Strength, px, py evidence.Proof, nx, ny uint64, hx, hy netip.Addr) int {
	if ex != ey {
		return int(ex) - int(ey)
	}
	if px != py {
		return int(py) - int(px)
	}
	if nx != ny {
		if nx > ny {
			return -1
		}
		return 1
	}
	return hx.Compare(hy)
}

// Timeline returns the binned sightings per family, or nil when the
// aggregator was made without one.
func (a *Aggregator) Timeline() *Timeline {
	if a.timeline != nil {
		a.timeline.names = &a.names[kindFamily]
	}
	return a.timeline
}

// interner maps the few distinct family, signature and sensor names to
// small ids; looking up a known name costs no allocation.
type interner struct {
	ids   map[string]uint32
	names []string
	// recent maps a cheap hash of a name to the id last seen with it, ahead
	// of the map: a log has a few names, so this answers nearly every line.
	recent [256]uint32 // id+1; 0 is empty
	rank   []uint32    // display order of each id, made by sorted
}

func (n *interner) id(b []byte) uint32 {
	slot := &n.recent[recentHash(b)]
	if r := *slot; r != 0 && n.names[r-1] == string(b) {
		return r - 1
	}
	id, ok := n.ids[string(b)]
	if !ok {
		id = uint32(len(n.names))
		s := string(b)
		n.names = append(n.names, s)
		n.ids[s] = id
	}
	*slot = id + 1
	return id
}

// recentHash picks an interner.recent slot from a name's length and its
// first and last eight bytes.
func recentHash(b []byte) uint64 {
	w := uint64(len(b))
	if len(b) >= 8 {
		w ^= binary.LittleEndian.Uint64(b) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[len(b)-8:]), 29)
	} else {
		for _, c := range b {
			w = w<<8 ^ uint64(c)
		}
	}
	return w * 0x9E3779B97F4A7C15 >> 56
}

// sorted returns the names of ids in display order: case-insensitive, then
// exact. The order of all names is computed once, when the first row is
// built (names are no longer added by then).
func (n *interner) sorted(ids []uint32) []string {
	n.prepare()
	slices.SortFunc(ids, func(a, b uint32) int { return int(n.rank[a]) - int(n.rank[b]) })
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = n.names[id]
	}
	return out
}

// prepare computes the display order of all names, once they are all
// known.
func (n *interner) prepare() {
	if len(n.rank) != len(n.names) {
		order := make([]uint32, len(n.names))
		for i := range order {
			order[i] = uint32(i)
		}
		lower := make([]string, len(n.names))
		for i, s := range n.names {
			lower[i] = strings.ToLower(s)
		}
		slices.SortFunc(order, func(a, b uint32) int {
			if c := strings.Compare(lower[a], lower[b]); c != 0 {
				return c
			}
			return strings.Compare(n.names[a], n.names[b])
		})
		n.rank = make([]uint32, len(n.names))
		for r, id := range order {
			n.rank[id] = uint32(r)
		}
	}
}
