package signatures

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math/bits"
	"strings"
	"time"
	"unsafe"
)

// Set is a compiled, immutable signature file. It is safe for concurrent use
// and every Match method is allocation-free, because the DNS shim and the
// packet matcher call them once per query and per packet.
type Set struct {
	file       File
	names      table                   // listed domains, exact and wildcard
	files      table                   // TFTP file names
	patterns   []filePattern           // TFTP file patterns (* and ?), in file order
	suffixes   table                   // the patterns that are "*" and a literal tail, by that tail
	sufLens    uint64                  // bit n set: some such tail is n bytes long
	others     []filePattern           // every other pattern
	payloads   [ICMP + 1][]payloadRule // content rules
	commands   [ICMP + 1][]payloadRule // command rules
	watched    [ICMP + 1]portSet       // the destination ports payload rules look at
	cmdPorts   [ICMP + 1]portSet       // the destination ports command rules look at
	maxContent [ICMP + 1]int           // the longest content of a content rule
	stats      Stats
	seed       uint64
}

// Stats counts what a Set holds.
type Stats struct {
	Signatures int
	Domains    int
	Wildcards  int
	TFTPFiles  int
	Payloads   int
}

// NameMatch is the rule a queried name matched.
type NameMatch struct {
	Signature *Signature
	Domain    *Domain
}

// FileMatch is the signature a TFTP file name matched.
type FileMatch struct {
	Signature *Signature
	File      string // the listed name
}

// PayloadMatch is the rule a packet payload matched.
type PayloadMatch struct {
	Signature *Signature
	Payload   *Payload
}

type payloadRule struct {
	sig   *Signature
	si    uint16 // sig's index in the file
	p     *Payload
	files []nameTest // a command rule's: sig's tftp_files, ready to test
}

// nameTest is one tftp_files entry as a command rule tests a fetched name
// against it: exactly, by a literal tail ("*.arm7", the common pattern),
// or by the whole pattern.
type nameTest struct {
	kind uint8 // nameExact, nameSuffix, nameGlob
	s    string
}

const (
	nameExact = iota
	nameSuffix
	nameGlob
)

func nameTests(files []string) []nameTest {
	out := make([]nameTest, len(files))
	for i, f := range files {
		switch {
		case !isPattern(f):
			out[i] = nameTest{nameExact, f}
		case f[0] == '*' && !isPattern(f[1:]):
			out[i] = nameTest{nameSuffix, f[1:]}
		default:
			out[i] = nameTest{nameGlob, f}
		}
	}
	return out
}

// Serial is the file's serial.
func (s *Set) Serial() uint64 { return s.file.Serial }

// Expires is when the file stops being current; zero when it never does.
func (s *Set) Expires() time.Time { return s.file.Expires }

// Name is the path or label the set was loaded from.
func (s *Set) Name() string { return s.file.Name }

// Signatures returns the signatures in file order. Callers must not modify them.
func (s *Set) Signatures() []Signature { return s.file.Signatures }

// Stats returns the counts of what the set holds.
func (s *Set) Stats() Stats { return s.stats }

// Compile builds the matchers for a decoded file. It rejects names and files
// listed twice, with the line of the second listing.
func Compile(f *File) (*Set, error) {
	s := &Set{file: *f, seed: randomSeed()}
	s.stats.Signatures = len(f.Signatures)
	nDomains, nFiles := 0, 0
	for i := range f.Signatures {
		nDomains += len(f.Signatures[i].Domains)
		nFiles += len(f.Signatures[i].TFTPFiles)
	}
	s.names.init(nDomains)
	s.files.init(nFiles)
	if !f.namesPacked {
		compactNames(s.file.Signatures, nDomains)
	}

	for si := range s.file.Signatures {
		sig := &s.file.Signatures[si]
		for di := range sig.Domains {
			d := &sig.Domains[di]
			h := hashFold(s.seed, d.Name)
			if prev, ok := s.names.insert(h, entry{sig: uint16(si), idx: uint32(di), wild: d.Wildcard}, func(e entry) bool {
				return e.wild == d.Wildcard && s.file.Signatures[e.sig].Domains[e.idx].Name == d.Name
			}); !ok {
				p := &s.file.Signatures[prev.sig]
				return nil, &Error{File: f.Name, Line: int(d.Line), Msg: fmt.Sprintf("domain %q is already listed by signature %q (line %d)", d.Pattern(), p.ID, p.Domains[prev.idx].Line)}
			}
			if d.Wildcard {
				s.stats.Wildcards++
			}
		}
		for fi, name := range sig.TFTPFiles {
			if isPattern(name) {
				for _, p := range s.patterns {
					if p.pattern == name {
						ps := &s.file.Signatures[p.sig]
						return nil, &Error{File: f.Name, Line: sig.Line, Msg: fmt.Sprintf("signature %q: tftp file pattern %q is already listed by signature %q (line %d)", sig.ID, name, ps.ID, ps.Line)}
					}
				}
				s.patterns = append(s.patterns, newFilePattern(si, fi, name))
				continue
			}
			h := hashFold(s.seed, name)
			if prev, ok := s.files.insert(h, entry{sig: uint16(si), idx: uint32(fi)}, func(e entry) bool {
				return s.file.Signatures[e.sig].TFTPFiles[e.idx] == name
			}); !ok {
				p := &s.file.Signatures[prev.sig]
				return nil, &Error{File: f.Name, Line: sig.Line, Msg: fmt.Sprintf("signature %q: tftp file %q is already listed by signature %q (line %d)", sig.ID, name, p.ID, p.Line)}
			}
		}
		var tests []nameTest // made once per signature
		for pi := range sig.Payloads {
			p := &sig.Payloads[pi]
			if p.Command != "" {
				if tests == nil {
					tests = nameTests(sig.TFTPFiles)
				}
				s.commands[p.Proto] = append(s.commands[p.Proto], payloadRule{sig: sig, si: uint16(si), p: p, files: tests})
				s.cmdPorts[p.Proto].add(p.Port)
			} else {
				s.payloads[p.Proto] = append(s.payloads[p.Proto], payloadRule{sig: sig, si: uint16(si), p: p})
				s.maxContent[p.Proto] = max(s.maxContent[p.Proto], len(p.Contains))
			}
			s.watched[p.Proto].add(p.Port)
			s.stats.Payloads++
		}
	}
	s.indexPatterns()
	s.stats.Domains = nDomains
	s.stats.TFTPFiles = nFiles
	return s, nil
}

// compactNames copies every domain name into one shared string, so a
// million-name set costs one allocation for its names instead of a million.
func compactNames(sigs []Signature, n int) {
	if n < 1024 {
		return
	}
	total := 0
	for i := range sigs {
		for _, d := range sigs[i].Domains {
			total += len(d.Name)
		}
	}
	var b strings.Builder
	b.Grow(total)
	for i := range sigs {
		for _, d := range sigs[i].Domains {
			b.WriteString(d.Name)
		}
	}
	arena := b.String()
	off := 0
	for i := range sigs {
		for j := range sigs[i].Domains {
			l := len(sigs[i].Domains[j].Name)
			sigs[i].Domains[j].Name = arena[off : off+l]
			off += l
		}
	}
}

// MatchName finds the rule for a queried name: an exact listing wins over a
// wildcard, and a longer wildcard over a shorter one. Case and a trailing dot
// are ignored.
func (s *Set) MatchName(qname string) (NameMatch, bool) {
	if len(qname) > 0 && qname[len(qname)-1] == '.' {
		qname = qname[:len(qname)-1]
	}
	if qname == "" || len(qname) > 253 || s.names.n == 0 {
		return NameMatch{}, false
	}
	var best entry
	found := false
	// The hash runs right to left, so at each label boundary it already holds
	// the hash of the suffix: every wildcard candidate costs one probe.
	h := s.seed ^ fnvOffset
	for i := len(qname) - 1; i >= 0; i-- {
		h = (h ^ uint64(lower(qname[i]))) * fnvPrime
		if i > 0 && qname[i-1] == '.' && s.stats.Wildcards > 0 {
			suffix := qname[i:]
			if e, ok := s.names.lookup(h, func(e entry) bool {
				return e.wild && equalFold(suffix, s.file.Signatures[e.sig].Domains[e.idx].Name)
			}); ok {
				best, found = e, true
			}
		}
	}
	if e, ok := s.names.lookup(h, func(e entry) bool {
		return !e.wild && equalFold(qname, s.file.Signatures[e.sig].Domains[e.idx].Name)
	}); ok {
		best, found = e, true
	}
	if !found {
		return NameMatch{}, false
	}
	sig := &s.file.Signatures[best.sig]
	return NameMatch{Signature: sig, Domain: &sig.Domains[best.idx]}, true
}

// indexPatterns sorts the patterns for MatchFile: "*.arm7"-style ones (a
// star, then a literal tail under 64 bytes) go in a hash table by their
// tail, which the walk over the name's hash reaches at no extra cost; the
// rest are tried one by one.
func (s *Set) indexPatterns() {
	s.suffixes.init(len(s.patterns))
	for _, p := range s.patterns {
		tail := p.pattern[1:]
		if p.pattern[0] != '*' || isPattern(tail) || len(tail) >= 64 {
			s.others = append(s.others, p)
			continue
		}
		s.sufLens |= 1 << len(tail)
		s.suffixes.insert(hashFold(s.seed, tail), entry{sig: p.sig, idx: p.idx}, func(entry) bool { return false })
	}
}

// MatchBelow finds the wildcard rule for a name strictly below suffix whose
// labels left of suffix can never be listed: a DNS label may hold any byte,
// a '.' included, and a listed label never holds one, so only a wildcard
// covering suffix (or a shorter suffix of it) can match such a name. The
// longest wildcard wins, as in MatchName.
func (s *Set) MatchBelow(suffix string) (NameMatch, bool) {
	if len(suffix) > 0 && suffix[len(suffix)-1] == '.' {
		suffix = suffix[:len(suffix)-1]
	}
	if suffix == "" || len(suffix) > 253 || s.names.n == 0 || s.stats.Wildcards == 0 {
		return NameMatch{}, false
	}
	var best entry
	found := false
	h := s.seed ^ fnvOffset
	for i := len(suffix) - 1; i >= 0; i-- {
		h = (h ^ uint64(lower(suffix[i]))) * fnvPrime
		if i == 0 || suffix[i-1] == '.' {
			part := suffix[i:]
			if e, ok := s.names.lookup(h, func(e entry) bool {
				return e.wild && equalFold(part, s.file.Signatures[e.sig].Domains[e.idx].Name)
			}); ok {
				best, found = e, true
			}
		}
	}
	if !found {
		return NameMatch{}, false
	}
	sig := &s.file.Signatures[best.sig]
	return NameMatch{Signature: sig, Domain: &sig.Domains[best.idx]}, true
}

// MatchFile finds the signature naming a TFTP file. Only the last path
// element counts, compared without regard to case. An exact listing wins;
// then, of the patterns that match, the one listed first.
func (s *Set) MatchFile(name string) (FileMatch, bool) {
	name = lastElement(name)
	if name == "" {
		return FileMatch{}, false
	}
	var best entry
	found := false
	better := func(e entry) bool {
		return !found || e.sig < best.sig || e.sig == best.sig && e.idx < best.idx
	}
	// One right-to-left hash walk: at each tail length some pattern has,
	// the hash so far is the hash of that tail.
	h := s.seed ^ fnvOffset
	for i := len(name) - 1; i >= 0; i-- {
		h = (h ^ uint64(lower(name[i]))) * fnvPrime
		if l := len(name) - i; l < 64 && s.sufLens&(1<<l) != 0 {
			tail := name[i:]
			if e, ok := s.suffixes.lookup(h, func(e entry) bool {
				return equalFold(tail, s.file.Signatures[e.sig].TFTPFiles[e.idx][1:])
			}); ok && better(e) {
				best, found = e, true
			}
		}
	}
	if e, ok := s.files.lookup(h, func(e entry) bool {
		return equalFold(name, s.file.Signatures[e.sig].TFTPFiles[e.idx])
	}); ok {
		best, found = e, true // an exact listing wins over any pattern
	} else {
		for i := range s.others {
			p := &s.others[i]
			e := entry{sig: p.sig, idx: p.idx}
			if better(e) && containsFold(name, p.literal) && globFold(p.pattern, name) {
				best, found = e, true
				break // in file order: no later one is better
			}
		}
	}
	if !found {
		return FileMatch{}, false
	}
	sig := &s.file.Signatures[best.sig]
	return FileMatch{Signature: sig, File: sig.TFTPFiles[best.idx]}, true
}

// HasPayloadRules reports whether any payload rule applies to proto, so a
// packet matcher can skip payload work entirely.
func (s *Set) HasPayloadRules(proto Proto) bool {
	return proto <= ICMP && len(s.payloads[proto])+len(s.commands[proto]) > 0
}

// PayloadPort reports whether a payload rule for proto looks at packets to
// port (a rule without a port looks at every port). A packet matcher uses it
// to follow TCP handshakes only where a match can need their proof.
func (s *Set) PayloadPort(proto Proto, port uint16) bool {
	return proto <= ICMP && s.watched[proto].has(port)
}

// portSet is a set of ports: a bit per port, or every port.
type portSet struct {
	all  bool
	bits *[1 << 16 / 64]uint64 // nil: no port
}

// add adds port, or every port for 0.
func (p *portSet) add(port uint16) {
	if port == 0 {
		p.all = true
		return
	}
	if p.bits == nil {
		p.bits = new([1 << 16 / 64]uint64)
	}
	p.bits[port/64] |= 1 << (port % 64)
}

func (p *portSet) has(port uint16) bool {
	return p.all || p.bits != nil && p.bits[port/64]&(1<<(port%64)) != 0
}

// MatchPayload finds a payload rule that a packet of proto to dstPort
// carrying payload matches: the first content rule in file order, else
// the first command rule. For ICMP, dstPort is ignored.
func (s *Set) MatchPayload(proto Proto, dstPort uint16, payload []byte) (PayloadMatch, bool) {
	var first PayloadMatch
	found := false
	s.MatchPayloads(proto, dstPort, payload, func(m PayloadMatch) bool {
		first, found = m, true
		return false
	})
	return first, found
}

// MaxPayloadMatches bounds the signatures one packet is evidence for.
const MaxPayloadMatches = 8

// MatchPayloads calls fn for every signature a packet of proto to dstPort
// carrying payload is evidence for, once per signature (its first rule
// that matches), up to MaxPayloadMatches and until fn returns false;
// content rules first, in file order, then command rules, in the order
// of the fetch commands. It returns how many calls it made. A packet that
// fetches two names is evidence for the signature of each: one payload
// carrying a Mirai and a Gafgyt loader line is two findings, as the IDS
// rules exported for the two signatures are.
func (s *Set) MatchPayloads(proto Proto, dstPort uint16, payload []byte, fn func(PayloadMatch) bool) int {
	return s.matchPayloads(proto, dstPort, payload, true, fn)
}

// MatchContents is MatchPayloads with the content rules alone: for a
// payload SegmentAlone found holding no fetch command.
func (s *Set) MatchContents(proto Proto, dstPort uint16, payload []byte, fn func(PayloadMatch) bool) int {
	return s.matchPayloads(proto, dstPort, payload, false, fn)
}

func (s *Set) matchPayloads(proto Proto, dstPort uint16, payload []byte, commands bool, fn func(PayloadMatch) bool) int {
	if proto > ICMP || len(payload) == 0 {
		return 0
	}
	var seen [MaxPayloadMatches]*Signature
	n := 0
	// report calls fn unless the signature is already reported; false
	// stops the walk.
	report := func(m PayloadMatch) bool {
		for _, sig := range seen[:n] {
			if sig == m.Signature {
				return true
			}
		}
		seen[n] = m.Signature
		n++
		return fn(m) && n < len(seen)
	}
	for _, r := range s.payloads[proto] {
		if r.p.Port != 0 && r.p.Port != dstPort {
			continue
		}
		var hit bool
		if r.p.NoCase {
			hit = indexFold(payload, r.p.Contains) >= 0
		} else {
			hit = bytes.Contains(payload, r.p.Contains)
		}
		if hit && !report(PayloadMatch{Signature: r.sig, Payload: r.p}) {
			return n
		}
	}
	if !commands || !s.cmdPorts[proto].has(dstPort) || !mayFetch(payload) {
		return n
	}
	var f fetchScanner
	f.reset(payload)
	for {
		name, long, ok := f.next()
		if !ok {
			return n
		}
		elem := lastElementBytes(name)
		// The rules of signatures that list files claim the names they
		// list; the any-name rules (weak) take a fetch none claims.
		claimed := false
		for _, r := range s.commands[proto] {
			if len(r.sig.TFTPFiles) == 0 || r.p.Port != 0 && r.p.Port != dstPort || long || !listsName(r.files, elem) {
				continue
			}
			claimed = true
			if !report(PayloadMatch{Signature: r.sig, Payload: r.p}) {
				return n
			}
		}
		if claimed {
			continue
		}
		for _, r := range s.commands[proto] {
			if len(r.sig.TFTPFiles) != 0 || r.p.Port != 0 && r.p.Port != dstPort {
				continue
			}
			if !report(PayloadMatch{Signature: r.sig, Payload: r.p}) {
				return n
			}
		}
	}
}

// listsName reports whether a signature's tftp_files (as nameTests) name
// elem, a last path element, as MatchFile compares: exactly or by
// pattern, in any case.
func listsName(tests []nameTest, elem []byte) bool {
	if len(elem) == 0 {
		return false
	}
	e := unsafe.String(unsafe.SliceData(elem), len(elem)) // compared only
	for _, t := range tests {
		switch t.kind {
		case nameExact:
			if equalFold(e, t.s) {
				return true
			}
		case nameSuffix:
			if len(e) >= len(t.s) && equalFold(e[len(e)-len(t.s):], t.s) {
				return true
			}
		default:
			if globFold(t.s, e) {
				return true
			}
		}
	}
	return false
}

func lastElementBytes(name []byte) []byte {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' || name[i] == '\\' {
			return name[i+1:]
		}
	}
	return name
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// equalFold compares s (any case) with want (already lower case).
func equalFold(s, want string) bool {
	if len(s) != len(want) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != want[i] {
			return false
		}
	}
	return true
}

// indexFold finds the lower-case needle in data of any ASCII case. The
// candidates are found with bytes.IndexByte (vectorised) on the needle's
// first byte in either case, so a packet without that byte costs one or
// two fast scans rather than a loop over every byte.
func indexFold(data, needle []byte) int {
	n := len(needle)
	if n == 0 {
		return 0
	}
	first := needle[0]
	upper := first
	if first >= 'a' && first <= 'z' {
		upper = first - ('a' - 'A')
	}
	nextLo, nextUp := -2, -2 // next position of each case of the first byte; -2: not looked for yet
	for i := 0; i+n <= len(data); {
		if nextLo != -1 && nextLo < i {
			if nextLo = bytes.IndexByte(data[i:len(data)-n+1], first); nextLo >= 0 {
				nextLo += i
			}
		}
		if upper == first {
			nextUp = nextLo
		} else if nextUp != -1 && nextUp < i {
			if nextUp = bytes.IndexByte(data[i:len(data)-n+1], upper); nextUp >= 0 {
				nextUp += i
			}
		}
		switch {
		case nextLo < 0 && nextUp < 0:
			return -1
		case nextLo < 0:
			i = nextUp
		case nextUp < 0:
			i = nextLo
		default:
			i = min(nextLo, nextUp)
		}
		j := 1
		for ; j < n; j++ {
			if lower(data[i+j]) != needle[j] {
				break
			}
		}
		if j == n {
			return i
		}
		i++
	}
	return -1
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashFold hashes s case-insensitively, right to left, exactly as MatchName
// does while it walks a query name.
func hashFold(seed uint64, s string) uint64 {
	h := seed ^ fnvOffset
	for i := len(s) - 1; i >= 0; i-- {
		h = (h ^ uint64(lower(s[i]))) * fnvPrime
	}
	return h
}

func randomSeed() uint64 {
	// A per-set seed keeps the table layout unpredictable to clients.
	return new(maphash.Hash).Sum64()
}

// table is an open-addressing hash index over entries that live in the
// signatures. A slot packs everything: a 16-bit hash tag, the signature,
// the wildcard flag and the entry's index, so a probe reads one word and
// most misses are decided without touching a signature.
type table struct {
	slots []uint64
	mask  uint64
	n     int
}

type entry struct {
	idx  uint32 // index of the domain or file within its signature
	sig  uint16
	wild bool
}

const (
	slotUsed = 1 << 31
	slotWild = 1 << 30
	slotIdx  = 1<<30 - 1 // MaxFileSize cannot hold more names than this
)

func (e entry) pack(tag uint64) uint64 {
	v := tag<<48 | uint64(e.sig)<<32 | slotUsed | uint64(e.idx&slotIdx)
	if e.wild {
		v |= slotWild
	}
	return v
}

func unpack(sl uint64) entry {
	return entry{idx: uint32(sl) & slotIdx, sig: uint16(sl >> 32), wild: sl&slotWild != 0}
}

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func (t *table) init(n int) {
	size := 8
	if n > 0 {
		size = 1 << bits.Len(uint(n*2))
	}
	t.slots = make([]uint64, size)
	t.mask = uint64(size - 1)
}

// insert adds e unless same reports an entry already there, which it returns.
func (t *table) insert(h uint64, e entry, same func(entry) bool) (entry, bool) {
	m := mix(h)
	tag := m >> 48
	for i := m & t.mask; ; i = (i + 1) & t.mask {
		sl := t.slots[i]
		if sl == 0 {
			t.slots[i] = e.pack(tag)
			t.n++
			return e, true
		}
		if sl>>48 == tag {
			if old := unpack(sl); same(old) {
				return old, false
			}
		}
	}
}

func (t *table) lookup(h uint64, same func(entry) bool) (entry, bool) {
	if t.n == 0 {
		return entry{}, false
	}
	m := mix(h)
	tag := m >> 48
	for i := m & t.mask; ; i = (i + 1) & t.mask {
		sl := t.slots[i]
		if sl == 0 {
			return entry{}, false
		}
		if sl>>48 == tag {
			if e := unpack(sl); same(e) {
				return e, true
			}
		}
	}
}
