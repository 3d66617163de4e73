package sinkhole

import (
	"hash/maphash"
	"net/netip"
	"time"
)

// gcra is a token bucket kept as one number, the generic cell rate
// algorithm: tat is the time the bucket would be full again. It costs no
// allocation and no lock; the guard's read loop is its only user.
type gcra struct {
	interval  int64 // nanoseconds per token; 0 means unlimited
	tolerance int64 // burst-1 intervals: how far tat may run ahead of now
}

func newGCRA(perSecond float64, burst int) gcra {
	if perSecond <= 0 {
		return gcra{}
	}
	if burst < 1 {
		burst = 1
	}
	iv := int64(float64(time.Second) / perSecond)
	if iv < 1 {
		iv = 1
	}
	return gcra{interval: iv, tolerance: iv * int64(burst-1)}
}

// allow takes a token from the bucket whose state is *tat, at time now.
func (g gcra) allow(tat *int64, now int64) bool {
	if g.interval == 0 {
		return true
	}
	t := *tat
	if t < now {
		t = now
	}
	if t-now > g.tolerance {
		return false
	}
	*tat = t + g.interval
	return true
}

// sourceTable holds one bucket per source, in a fixed array: a flood from
// many addresses costs no memory beyond it. A source whose slot another
// took starts afresh, which can only make the limit more lenient for it;
// the overall limit still holds.
type sourceTable struct {
	seed  maphash.Seed
	mask  uint64
	slots []sourceSlot
}

type sourceSlot struct {
	key netip.Addr
	tat int64
}

func newSourceTable(n int) *sourceTable {
	size := 1
	for size < n {
		size <<= 1
	}
	return &sourceTable{seed: maphash.MakeSeed(), mask: uint64(size - 1), slots: make([]sourceSlot, size)}
}

// bucket returns the state of the bucket for a, taking over its slot when
// another source held it.
func (t *sourceTable) bucket(a netip.Addr) *int64 {
	a = sourceKey(a)
	b := a.As16()
	i := maphash.Bytes(t.seed, b[:]) & t.mask
	s := &t.slots[i]
	if s.key != a {
		s.key, s.tat = a, 0
	}
	return &s.tat
}

// sourceKey is what one source is: an IPv4 address, or an IPv6 /64, since
// one host may use any address of its /64.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		for i := 8; i < 16; i++ {
			b[i] = 0
		}
		return netip.AddrFrom16(b)
	}
	return a
}
