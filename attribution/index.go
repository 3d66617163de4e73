package attribution

import (
	"net/netip"
	"sync"
	"time"
)

// Result is who a sighting is attributed to.
type Result struct {
	// Subscriber is the one subscriber the address, port and time name;
	// empty when none is known or when several match.
	Subscriber string
	// Inside is the inside address (and port, when the NAT log gave it)
	// that carrier-grade NAT resolved the public address and port to.
	Inside netip.AddrPort
	// Candidates is how many subscribers matched when more than one did
	// (no port, or a port outside every block): Subscriber is then empty.
	Candidates int
}

// span is one binding in memory: a session's address or prefix, or one NAT
// binding, from start until end. Times are Unix milliseconds; end 0 means
// still open, and an open span ends at last+timeout or at the start of the
// next span on the same key, whichever comes first, so a lost Stop,
// DESTROY or release never extends it forever.
type span struct {
	start, last, end int64
	prev             int32 // the older span on the same key, -1 for none
	prevAddr         int32 // NAT: the older span on the same public address
	// NAT: the public port range and the inside address and port.
	lo, hi uint16
	inPort uint16
	in     [16]byte
	inV4   bool
	sub    uint32 // session: the subscriber, an index into Index.subs
}

// Index is the in-memory interval index in front of the store: every
// session and NAT binding inside the retention, so that attributing one
// sighting is a few map look-ups and a short walk, without the store and
// without allocating. It is rebuilt from the store at start.
type Index struct {
	mu sync.RWMutex

	sessionTimeout int64 // ms
	natTimeout     int64 // ms

	subs  []string
	subID map[string]uint32

	sess   []span
	sess4  headTable              // IPv4 framed address → newest spans
	sess6  map[netip.Prefix]int32 // IPv6 prefix → newest span
	lens6  []int                  // prefix lengths in sess6, longest first
	static *Subscribers           // the --subscribers file, behind sessions

	nat     []span
	nat4    headTable                // IPv4 public address<<16 | port → newest one-port spans
	nat6    map[netip.AddrPort]int32 // IPv6 public address and port → newest one-port span
	blocks  map[netip.Addr]int32     // public address → newest port-block span (chained by prev)
	byAddr  map[netip.Addr]int32     // public address → newest span of either kind (chained by prevAddr)
	maxSpan int64                    // the longest NAT span to its end or last event, bounding walks

	det *Deterministic
}

// NewIndex returns an empty index. Open sessions end sessionTimeout after
// their last Start or Interim-Update, open NAT bindings natTimeout after
// their last event.
func NewIndex(sessionTimeout, natTimeout time.Duration) *Index {
	return &Index{
		sessionTimeout: sessionTimeout.Milliseconds(),
		natTimeout:     natTimeout.Milliseconds(),
		subID:          map[string]uint32{},
		sess4:          newHeadTable(),
		sess6:          map[netip.Prefix]int32{},
		nat4:           newHeadTable(),
		nat6:           map[netip.AddrPort]int32{},
		blocks:         map[netip.Addr]int32{},
		byAddr:         map[netip.Addr]int32{},
	}
}

// SetStatic sets the subscribers file consulted when no session names an
// address; nil removes it.
func (x *Index) SetStatic(s *Subscribers) {
	x.mu.Lock()
	x.static = s
	x.mu.Unlock()
}

// SetDeterministic sets the deterministic NAT configuration; nil removes it.
func (x *Index) SetDeterministic(d *Deterministic) {
	x.mu.Lock()
	x.det = d
	x.mu.Unlock()
}

// Len returns the number of sessions and NAT bindings held.
func (x *Index) Len() (sessions, nat int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.sess), len(x.nat)
}

func (x *Index) intern(sub string) uint32 {
	if id, ok := x.subID[sub]; ok {
		return id
	}
	id := uint32(len(x.subs))
	x.subs = append(x.subs, sub)
	x.subID[sub] = id
	return id
}

func addrFrom4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func v4key(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// putSession records a session (new, or an update of one already held:
// same key, start and subscriber).
func (x *Index) putSession(s *Session) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.putSessionLocked(s)
}

// putSessionLocked records s and reports whether the index did not hold
// it yet (under any of its addresses).
func (x *Index) putSessionLocked(s *Session) (added bool) {
	sub := x.intern(s.Subscriber)
	sp := span{start: ms(s.Start), last: ms(s.Last), end: ms(s.Stop), sub: sub}
	if sp.last < sp.start {
		sp.last = sp.start
	}
	if a := s.Framed.Unmap(); a.Is4() {
		k := uint64(v4key(a))
		head := x.sess4.head(k)
		if i := x.findSession(head, sp); i >= 0 {
			x.updateSpan(&x.sess[i], sp)
		} else {
			x.sess = append(x.sess, sp)
			head = linkSorted(x.sess, head, int32(len(x.sess)-1), prevOf)
			added = true
		}
		x.sess4.set(k, head, x.sess, prevOf, x.sessionTimeout, false)
	}
	for _, p := range []netip.Prefix{s.FramedV6, s.Delegated} {
		if !p.IsValid() || !p.Addr().Is6() {
			continue
		}
		p = p.Masked()
		head, ok := x.sess6[p]
		if !ok {
			head = -1
			x.addLen6(p.Bits())
		}
		if i := x.findSession(head, sp); i >= 0 {
			x.updateSpan(&x.sess[i], sp)
			continue
		}
		x.sess = append(x.sess, sp)
		x.sess6[p] = linkSorted(x.sess, head, int32(len(x.sess)-1), prevOf)
		added = true
	}
	return added
}

func (x *Index) addLen6(bits int) {
	for _, l := range x.lens6 {
		if l == bits {
			return
		}
	}
	x.lens6 = append(x.lens6, bits)
	for i := len(x.lens6) - 1; i > 0 && x.lens6[i] > x.lens6[i-1]; i-- {
		x.lens6[i], x.lens6[i-1] = x.lens6[i-1], x.lens6[i]
	}
}

func (x *Index) findSession(i int32, sp span) int32 {
	for ; i >= 0; i = x.sess[i].prev {
		s := &x.sess[i]
		if s.start == sp.start && s.sub == sp.sub {
			return i
		}
		if s.start < sp.start {
			break
		}
	}
	return -1
}

func prevOf(s *span) *int32     { return &s.prev }
func prevAddrOf(s *span) *int32 { return &s.prevAddr }

// linkSorted links span i into the chain starting at head so that the
// chain stays newest start first (imports of old logs arrive out of
// order), and returns the new head.
func linkSorted(arr []span, head, i int32, prev func(*span) *int32) int32 {
	st := arr[i].start
	if head < 0 || arr[head].start <= st {
		*prev(&arr[i]) = head
		return i
	}
	n := head
	for {
		p := *prev(&arr[n])
		if p < 0 || arr[p].start <= st {
			*prev(&arr[i]) = p
			*prev(&arr[n]) = i
			return head
		}
		n = p
	}
}

func (x *Index) updateSpan(s *span, n span) {
	if n.last > s.last {
		s.last = n.last
	}
	if n.end != 0 {
		s.end = n.end
	}
}

// putNAT records a NAT binding (new, or an update of one already held:
// same public address, port range, inside address and port, and start).
func (x *Index) putNAT(b *Binding) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.putNATLocked(b)
}

func (x *Index) putNATLocked(b *Binding) {
	pub := b.Public.Unmap()
	sp := span{start: ms(b.Start), last: ms(b.Last), end: ms(b.End), lo: b.PortLo, hi: b.PortHi, inPort: b.InsidePort}
	if sp.last < sp.start {
		sp.last = sp.start
	}
	in := b.Inside.Unmap()
	sp.in = in.As16()
	sp.inV4 = in.Is4()
	var head int32 = -1
	oneport := b.PortLo == b.PortHi
	var k4 uint64
	var k6 netip.AddrPort
	switch {
	case oneport && pub.Is4():
		k4 = uint64(v4key(pub))<<16 | uint64(b.PortLo)
		head = x.nat4.head(k4)
	case oneport:
		k6 = netip.AddrPortFrom(pub, b.PortLo)
		if h, ok := x.nat6[k6]; ok {
			head = h
		}
	default:
		if h, ok := x.blocks[pub]; ok {
			head = h
		}
	}
	for i := head; i >= 0; i = x.nat[i].prev {
		s := &x.nat[i]
		if s.start == sp.start && s.lo == sp.lo && s.hi == sp.hi && s.in == sp.in && s.inPort == sp.inPort {
			x.updateSpan(s, sp)
			x.noteSpan(s)
			if oneport && pub.Is4() {
				x.nat4.set(k4, head, x.nat, prevOf, x.natTimeout, true) // the copy of the newest span
			}
			return
		}
		if s.start < sp.start {
			break
		}
	}
	x.nat = append(x.nat, sp)
	i := int32(len(x.nat) - 1)
	ah := int32(-1)
	if h, ok := x.byAddr[pub]; ok {
		ah = h
	}
	x.byAddr[pub] = linkSorted(x.nat, ah, i, prevAddrOf)
	h := linkSorted(x.nat, head, i, prevOf)
	switch {
	case oneport && pub.Is4():
		x.nat4.set(k4, h, x.nat, prevOf, x.natTimeout, true)
	case oneport:
		x.nat6[k6] = h
	default:
		x.blocks[pub] = h
	}
	x.noteSpan(&x.nat[i])
}

func (x *Index) noteSpan(s *span) {
	if d := max(s.end, s.last) - s.start; d > x.maxSpan {
		x.maxSpan = d
	}
}

// effectiveEnd is when s ended: its end, else its last event plus the
// timeout, and never after next (the start of the newer span on its key;
// 0 for none).
func effectiveEnd(s *span, timeout, next int64) int64 {
	e := s.end
	if e == 0 {
		e = s.last + timeout
	}
	if next != 0 && next < e {
		e = next
	}
	return e
}

// Lookup attributes a sighting of addr (and port, 0 for none) at t. It
// allocates nothing.
func (x *Index) Lookup(addr netip.Addr, port uint16, t time.Time) Result {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.lookup(addr.Unmap(), port, t.UnixMilli())
}

func (x *Index) lookup(addr netip.Addr, port uint16, t int64) Result {
	// NAT first: a public address held by bindings at t names an inside
	// address, never a subscriber of its own.
	if r, ok := x.lookupNAT(addr, port, t); ok {
		return r
	}
	if x.det != nil {
		if r, ok := x.det.lookup(addr, port, t); ok {
			if r.Candidates > 1 || !r.Inside.IsValid() {
				return r
			}
			r.Subscriber = x.subscriberOf(r.Inside.Addr(), t)
			return r
		}
	}
	return Result{Subscriber: x.subscriberOf(addr, t)}
}

// subscriberOf names the subscriber addr belonged to at t: the RADIUS
// session then, else the subscribers file.
func (x *Index) subscriberOf(addr netip.Addr, t int64) string {
	if addr.Is4() {
		if hs := x.sess4.find(uint64(v4key(addr))); hs != nil {
			// The two newest sessions from the slot, older ones from the spans.
			switch k, next := hs.pick(t); k {
			case 0, 1:
				return x.subs[hs.aux[k]]
			case -1:
				if i := x.sessionAtFrom(hs.i2, t, next); i >= 0 {
					return x.subs[x.sess[i].sub]
				}
			}
			if i := loggedSoonAfter(x.sess, hs.i0, t); i >= 0 {
				return x.subs[x.sess[i].sub]
			}
		}
	} else if addr.Is6() {
		for _, bits := range x.lens6 {
			p, _ := addr.Prefix(bits)
			if h, ok := x.sess6[p]; ok {
				if i := x.sessionAt(h, t); i >= 0 {
					return x.subs[x.sess[i].sub]
				}
				if i := loggedSoonAfter(x.sess, h, t); i >= 0 {
					return x.subs[x.sess[i].sub]
				}
			}
		}
	}
	if x.static != nil {
		return x.static.Lookup(addr)
	}
	return ""
}

// LogLag is how long after a sighting a NAT binding or a session may be
// logged as starting and still be taken for the sighting's, when none
// held the sighting's time. Logs stamp a start when their record is made,
// a moment after the first packet: ulogd stamps a conntrack NEW event
// when it reads it (the kernel sends the connection's own start time only
// with DESTROY), a NAS sends Accounting-Start after the session is up, and
// their clocks are not the sensor's. A sighting in that moment is the
// first packet of the binding logged just after it: nothing else held the
// address (and port) then, or it would have been found.
const LogLag = 2 * time.Second

const logLagMS = int64(LogLag / time.Millisecond)

// loggedSoonAfter returns the oldest span of the chain from i (newest
// first, by prev) that started after t and at most LogLag after it, -1
// when none did. It is asked only when no span of the chain held t.
func loggedSoonAfter(arr []span, i int32, t int64) int32 {
	found := int32(-1)
	for ; i >= 0 && arr[i].start > t; i = arr[i].prev {
		if arr[i].start <= t+logLagMS {
			found = i
		}
	}
	return found
}

// sessionAt walks a key's sessions, newest first, for the one holding t.
func (x *Index) sessionAt(i int32, t int64) int32 {
	return x.sessionAtFrom(i, t, 0)
}

// sessionAtFrom walks sessions from i, newest first, for the one holding
// t; next is the start of the session newer than i (0: none).
func (x *Index) sessionAtFrom(i int32, t, next int64) int32 {
	for ; i >= 0; i = x.sess[i].prev {
		s := &x.sess[i]
		if s.start <= t && t < effectiveEnd(s, x.sessionTimeout, next) {
			return i
		}
		if s.start <= t {
			return -1 // older sessions ended before this one started
		}
		next = s.start
	}
	return -1
}

// maxCandidates bounds the distinct inside addresses told apart without
// allocating; past it every further match counts as another candidate.
const maxCandidates = 32

type candidates struct {
	n    int
	seen [maxCandidates]*span
}

func (c *candidates) add(s *span) {
	for i := 0; i < c.n && i < maxCandidates; i++ {
		if c.seen[i].in == s.in {
			return
		}
	}
	if c.n < maxCandidates {
		c.seen[c.n] = s
	}
	c.n++
}

func (x *Index) lookupNAT(addr netip.Addr, port uint16, t int64) (Result, bool) {
	var c candidates
	if port != 0 {
		// The common case first: one slot holds the port's two newest
		// bindings, and where the walk through older ones starts.
		var head int32 = -1
		var next int64
		if addr.Is4() {
			if hs := x.nat4.find(uint64(v4key(addr))<<16 | uint64(port)); hs != nil {
				switch k, nx := hs.pick(t); {
				case k == -1:
					head, next = hs.i2, nx
				case k < 0:
					// No binding of this port held t.
				case hs.inl[k]:
					in := netip.AddrPortFrom(addrFrom4(hs.aux[k]), hs.port[k])
					return Result{Subscriber: x.subscriberOf(in.Addr(), t), Inside: in}, true
				default:
					return x.resolveInside(&x.nat[hs.index(k, x.nat, prevOf)], t), true
				}
			}
		} else if len(x.nat6) > 0 {
			if h, ok := x.nat6[netip.AddrPortFrom(addr, port)]; ok {
				head = h
			}
		}
		for i := head; i >= 0; i = x.nat[i].prev {
			s := &x.nat[i]
			if s.start <= t && t < effectiveEnd(s, x.natTimeout, next) {
				return x.resolveInside(s, t), true
			}
			if s.start <= t {
				break
			}
			next = s.start
		}
	}
	if port != 0 {
		var head int32 = -1
		if addr.Is4() {
			head = x.nat4.head(uint64(v4key(addr))<<16 | uint64(port))
		} else if h, ok := x.nat6[netip.AddrPortFrom(addr, port)]; ok {
			head = h
		}
		if i := loggedSoonAfter(x.nat, head, t); i >= 0 {
			return x.resolveInside(&x.nat[i], x.nat[i].start), true
		}
	}
	if _, ok := x.byAddr[addr]; !ok {
		return Result{}, false
	}
	if port != 0 {
		x.blockAt(addr, port, t, &c)
		if c.n == 1 {
			return x.resolveInside(c.seen[0], t), true
		}
		if c.n > 1 {
			return x.ambiguous(&c, t), true
		}
	}
	// No port, or a port no binding held: every inside address the
	// public address carried at t is a candidate.
	x.addrAt(addr, t, port == 0, &c)
	if c.n == 0 {
		return Result{}, false
	}
	if port != 0 {
		// The port is outside every binding: the logs cannot say which
		// of them it was, even when only one is known.
		return Result{Candidates: c.n}, true
	}
	return x.ambiguous(&c, t), true
}

// blockAt adds the port blocks of addr holding port at t.
func (x *Index) blockAt(addr netip.Addr, port uint16, t int64, c *candidates) {
	h, ok := x.blocks[addr]
	if !ok {
		return
	}
	for i := h; i >= 0; i = x.nat[i].prev {
		s := &x.nat[i]
		if s.start < t-x.maxSpan-x.natTimeout {
			return // older blocks all ended before t
		}
		if port < s.lo || port > s.hi || s.start > t {
			continue
		}
		// A newer block over this port ends this one.
		var next int64
		for j := h; j != i; j = x.nat[j].prev {
			n := &x.nat[j]
			if n.lo <= port && port <= n.hi && n.start > s.start && (next == 0 || n.start < next) {
				next = n.start
			}
		}
		if t < effectiveEnd(s, x.natTimeout, next) {
			c.add(s)
			return
		}
		if s.start < t-x.maxSpan-x.natTimeout {
			return // older blocks all ended before t
		}
	}
}

// addrAt adds every binding of addr in force at t, whatever its port;
// with lagged, also every binding logged as starting at most LogLag
// after t: its first packet may have been before t (see LogLag), and a
// sighting without a port cannot be told apart from it, so it is a
// candidate too (never one subscriber named for two).
func (x *Index) addrAt(addr netip.Addr, t int64, lagged bool, c *candidates) {
	h := x.byAddr[addr]
	horizon := t - x.maxSpan - x.natTimeout
	for i := h; i >= 0; i = x.nat[i].prevAddr {
		s := &x.nat[i]
		if s.start < horizon {
			break
		}
		if s.start > t {
			if lagged && s.start <= t+logLagMS {
				c.add(s)
			}
			continue
		}
		end := s.end
		if end == 0 {
			end = s.last + x.natTimeout
		}
		if t < end {
			c.add(s)
		}
	}
}

func (s *span) inside() netip.AddrPort {
	a := netip.AddrFrom16(s.in)
	if s.inV4 {
		a = a.Unmap()
	}
	return netip.AddrPortFrom(a, s.inPort)
}

func (x *Index) resolveInside(s *span, t int64) Result {
	in := s.inside()
	return Result{Subscriber: x.subscriberOf(in.Addr(), t), Inside: in}
}

// ambiguous names the one subscriber all candidates share, else counts them.
func (x *Index) ambiguous(c *candidates, t int64) Result {
	if c.n > maxCandidates {
		return Result{Candidates: c.n}
	}
	first := x.subscriberOf(c.seen[0].inside().Addr(), t)
	distinct := 1
	for i := 1; i < c.n; i++ {
		sub := x.subscriberOf(c.seen[i].inside().Addr(), t)
		if sub == "" || sub != first {
			distinct = c.n // unknown or different: never merged
			break
		}
	}
	if first != "" && distinct == 1 {
		return Result{Subscriber: first}
	}
	return Result{Candidates: c.n}
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// compact drops from memory what ended before cutoff (the store has just
// deleted it), rebuilding the chains from what is kept.
func (x *Index) compact(cutoff int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := NewIndex(0, 0)
	n.sessionTimeout, n.natTimeout = x.sessionTimeout, x.natTimeout
	n.subs, n.subID, n.static, n.det = x.subs, x.subID, x.static, x.det
	n.lens6 = append([]int(nil), x.lens6...)
	var keep []span
	collect := func(h int32, arr []span, prev func(*span) *int32, timeout int64) []span {
		keep = keep[:0]
		for i := h; i >= 0; i = *prev(&arr[i]) {
			s := arr[i]
			if effectiveEnd(&s, timeout, 0) >= cutoff {
				keep = append(keep, s)
			}
		}
		return keep
	}
	x.sess4.all(func(k uint64, h int32) {
		ks := collect(h, x.sess, prevOf, x.sessionTimeout)
		head := int32(-1)
		for i := len(ks) - 1; i >= 0; i-- {
			n.sess = append(n.sess, ks[i])
			head = linkSorted(n.sess, head, int32(len(n.sess)-1), prevOf)
		}
		if head >= 0 {
			n.sess4.set(k, head, n.sess, prevOf, n.sessionTimeout, false)
		}
	})
	for k, h := range x.sess6 {
		ks := collect(h, x.sess, prevOf, x.sessionTimeout)
		head := int32(-1)
		for i := len(ks) - 1; i >= 0; i-- {
			n.sess = append(n.sess, ks[i])
			head = linkSorted(n.sess, head, int32(len(n.sess)-1), prevOf)
		}
		if head >= 0 {
			n.sess6[k] = head
		}
	}
	for pub, h := range x.byAddr {
		ks := collect(h, x.nat, prevAddrOf, x.natTimeout)
		for i := len(ks) - 1; i >= 0; i-- {
			s := &ks[i]
			b := Binding{Public: pub, PortLo: s.lo, PortHi: s.hi, InsidePort: s.inPort,
				Start: fromMS(s.start), Last: fromMS(s.last), End: fromMS(s.end)}
			b.Inside = s.inside().Addr()
			n.putNATLocked(&b)
		}
	}
	x.sess, x.sess4, x.sess6 = n.sess, n.sess4, n.sess6
	x.nat, x.nat4, x.nat6, x.blocks, x.byAddr, x.maxSpan = n.nat, n.nat4, n.nat6, n.blocks, n.byAddr, n.maxSpan
}
