package attribution

import "math/rand/v2"

// headTable maps an integer key (an IPv4 address, or an IPv4 address and
// port) to the head of its chain of spans, newest first. It replaces a Go
// map on the look-up's hot path: with millions of keys every access is a
// cache miss, and a map costs several (its directory, its group's control
// word, its slot) where one open-addressing slot, one cache line, costs
// one. The slot also holds a copy of what a look-up needs of the two newest
// spans (start, end, and the subscriber or the IPv4 inside address and
// port), so that a sighting in either reads no span at all; older ones
// are walked from the third newest.
type headTable struct {
	slots []headSlot
	n     int    // keys held
	shift uint   // 64 - log2(len(slots))
	seed  uint64 // per table, so that no one can choose colliding keys
}

// headSlot is one key's entry; used has the key in its low 62 bits and
// bit 63 set.
type headSlot struct {
	used  uint64
	start [2]int64 // the newest span's start, and the second newest's
	end   [2]int64 // their ends (effectiveEnd: the second ends where the newest starts)
	// aux and port hold a session's subscriber, or a NAT binding's IPv4
	// inside address and inside port, when inl says so (an IPv6 inside
	// address is read from the span).
	aux    [2]uint32
	i0, i2 int32 // the newest span, and the third newest where walks go on (-1: none)
	port   [2]uint16
	inl    [2]bool
	n      uint8 // spans held: 0, 1 or 2
}

// pick returns which of the two newest spans holds t (0 or 1), or -1 when
// an older one may: the walk goes on from i2 with next, the start of the
// second newest; or -2 when none does.
func (s *headSlot) pick(t int64) (int, int64) {
	for k := 0; k < int(s.n); k++ {
		if s.start[k] <= t {
			if t < s.end[k] {
				return k, 0
			}
			return -2, 0 // older spans ended before this one started
		}
	}
	if s.n == 2 && s.i2 >= 0 {
		return -1, s.start[1]
	}
	return -2, 0
}

const slotUsed = 1 << 63

func newHeadTable() headTable {
	return headTable{slots: make([]headSlot, 8), shift: 64 - 3, seed: rand.Uint64() | 1}
}

func (h *headTable) hash(k uint64) uint64 {
	return ((k ^ h.seed) * 0x9E3779B97F4A7C15) >> h.shift
}

// find returns the slot of k, nil when k is absent.
func (h *headTable) find(k uint64) *headSlot {
	want := k | slotUsed
	mask := uint64(len(h.slots) - 1)
	for i := h.hash(k); ; i = (i + 1) & mask {
		s := &h.slots[i]
		if s.used == want {
			return s
		}
		if s.used == 0 {
			return nil
		}
	}
}

// head returns the newest span on k, -1 when none.
func (h *headTable) head(k uint64) int32 {
	if s := h.find(k); s != nil {
		return s.i0
	}
	return -1
}

// set makes head (a span of arr, chained by prev) the newest span on k, or
// refreshes the copy of it after a change; timeout ends an open span, nat
// says whether arr holds NAT bindings or sessions.
func (h *headTable) set(k uint64, head int32, arr []span, prev func(*span) *int32, timeout int64, nat bool) {
	if s := h.find(k); s != nil {
		fill(s, head, arr, prev, timeout, nat)
		return
	}
	if (h.n+1)*4 > len(h.slots)*3 {
		h.grow()
	}
	mask := uint64(len(h.slots) - 1)
	i := h.hash(k)
	for h.slots[i].used != 0 {
		i = (i + 1) & mask
	}
	h.slots[i].used = k | slotUsed
	fill(&h.slots[i], head, arr, prev, timeout, nat)
	h.n++
}

func fill(s *headSlot, head int32, arr []span, prev func(*span) *int32, timeout int64, nat bool) {
	*s = headSlot{used: s.used, i0: head, i2: -1}
	var next int64
	for i := head; i >= 0 && s.n < 2; i = *prev(&arr[i]) {
		k, sp := s.n, &arr[i]
		s.start[k], s.end[k] = sp.start, effectiveEnd(sp, timeout, next)
		switch {
		case !nat:
			s.aux[k], s.inl[k] = sp.sub, true
		case sp.inV4:
			s.aux[k] = uint32(sp.in[12])<<24 | uint32(sp.in[13])<<16 | uint32(sp.in[14])<<8 | uint32(sp.in[15])
			s.port[k], s.inl[k] = sp.inPort, true
		}
		s.n++
		next = sp.start
		if s.n == 2 {
			s.i2 = *prev(sp)
		}
	}
}

// index returns the span that pick's k (0 or 1) names.
func (s *headSlot) index(k int, arr []span, prev func(*span) *int32) int32 {
	if k == 0 {
		return s.i0
	}
	return *prev(&arr[s.i0])
}

func (h *headTable) grow() {
	old := h.slots
	h.slots = make([]headSlot, 2*len(old))
	h.shift--
	mask := uint64(len(h.slots) - 1)
	for _, s := range old {
		if s.used == 0 {
			continue
		}
		i := h.hash(s.used &^ slotUsed)
		for h.slots[i].used != 0 {
			i = (i + 1) & mask
		}
		h.slots[i] = s
	}
}

// all calls f with every key and its head.
func (h *headTable) all(f func(k uint64, head int32)) {
	for _, s := range h.slots {
		if s.used != 0 {
			f(s.used&^slotUsed, s.i0)
		}
	}
}
