package report

import (
	"math/bits"
	"net/netip"
)

// merge folds b, a parallel read's worker, into a, another worker of the
// same read (both made with the same filter, both tracking positions), so
// that a ends as one Aggregator reading every line in file order would.
//
// Every per-host field Add sets needs its rule here: sums add up, minima
// and maxima compare, sets unite (through names: each worker numbers names
// in its own order), and a value taken from "the first" or "the last"
// line compares positions when the times are equal. TestMergeSameAsOneRead
// checks the result against one sequential read on random logs, so a field
// added to Add and forgotten here fails it.
func (a *Aggregator) merge(b *Aggregator) {
	b.listExtras()
	var remap [numKinds][]uint32 // b's name ids → a's
	for k := range b.names {
		if k == kindSubscriber {
			continue // by name: see addSub
		}
		remap[k] = make([]uint32, len(b.names[k].names))
		for id, name := range b.names[k].names {
			remap[k][id] = a.names[k].id([]byte(name))
		}
	}
	for j := range uint32(b.aggs.len()) {
		if j%addBatch == 0 {
			// Warm a's state of b's next hosts, as addBatch does for lines.
			var hosts [addBatch]netip.Addr
			n := min(addBatch, uint32(b.aggs.len())-j)
			for k := range n {
				hosts[k] = *b.addrs.at(j + k)
			}
			a.warm(hosts[:n])
		}
		bh, bp, addr := b.aggs.at(j), *b.pos.at(j), *b.addrs.at(j)
		i, ok := a.lookup(addr)
		if !ok {
			i = uint32(a.aggs.len())
			a.insert(addr, i)
			a.aggs.push(hostAgg{first: bh.first, last: bh.last, firstPort: bh.firstPort, lastPort: bh.lastPort,
				evidence: bh.evidence, src: bh.src, proof: bh.proof})
			a.addrs.push(addr)
			a.pos.push(bp)
		} else {
			h, p := a.aggs.at(i), a.pos.at(i)
			if bh.first < h.first || bh.first == h.first && bp.first < p.first {
				h.first, h.firstPort, p.first = bh.first, bh.firstPort, bp.first
			}
			if bh.last > h.last || bh.last == h.last && bp.last > p.last {
				h.last, h.lastPort, p.last = bh.last, bh.lastPort, bp.last
			}
			if bh.evidence < h.evidence {
				h.evidence = bh.evidence
			}
			if bh.proof > h.proof { // the best
				h.proof = bh.proof
			}
			for k := range h.src {
				h.src[k] = addSat(h.src[k], bh.src[k])
			}
		}
		for _, set := range []struct {
			kind int
			bits uint32
		}{{kindFamily, bh.fams}, {kindSig, bh.sigs}, {kindSensor, bh.sensors}} {
			// The set bits only, lowest first: most hosts have one or
			// two of 32, and this loop runs once per host on one core.
			for m := set.bits; m != 0; m &= m - 1 {
				id := uint32(bits.TrailingZeros32(m))
				a.markKind(i, set.kind, remap[set.kind][id])
			}
		}
		if bh.subs != 0 {
			addSub(a, a.aggs.at(i), i, b.names[kindSubscriber].names[bh.subs-1])
		}
		if bh.hasExtra {
			for _, x := range b.extras.of(j) {
				kind, id := int(x>>30), x&(1<<30-1)
				if kind == kindSubscriber {
					addSub(a, a.aggs.at(i), i, b.names[kind].names[id])
					continue
				}
				a.markKind(i, kind, remap[kind][id])
			}
		}
	}
	a.mergeNetworks(b)
	a.kept = addSat(a.kept, b.kept)
	if a.timeline != nil && b.timeline != nil {
		a.timeline.merge(b.timeline, remap[kindFamily])
	}
}

// markKind adds name id of kind to host i's set.
func (a *Aggregator) markKind(i uint32, kind int, id uint32) {
	h := a.aggs.at(i)
	switch kind {
	case kindFamily:
		a.mark(h, i, &h.fams, kind, id)
	case kindSig:
		a.mark(h, i, &h.sigs, kind, id)
	default:
		a.mark(h, i, &h.sensors, kind, id)
	}
}

// merge adds o's sightings (family ids mapped through fam) to t. Bucket
// widths are a minute times a power of two, so the narrower timeline's
// buckets fall whole into the wider's; the result widens until it fits,
// as one timeline fed every line would have.
func (t *Timeline) merge(o *Timeline, fam []uint32) {
	for t.width < o.width {
		t.widen()
	}
	f := t.width / o.width
	for id, s := range o.series {
		ts := t.series[fam[id]]
		if ts == nil {
			ts = make(map[int64]uint64)
			t.series[fam[id]] = ts
		}
		for b, n := range s {
			nb := floorDiv(b, f)
			if _, ok := ts[nb]; !ok {
				t.buckets++
			}
			ts[nb] = addSat(ts[nb], n)
		}
	}
	t.min = min(t.min, o.min)
	t.max = max(t.max, o.max)
	for t.buckets > maxTimelineBuckets {
		t.widen()
	}
}

// mergeNetworks folds b's network lines into a's: their state has no
// first/last values to break ties on, only extremes, sums and sets.
func (a *Aggregator) mergeNetworks(b *Aggregator) {
	for p, bn := range b.nets {
		if a.nets == nil {
			a.nets = make(map[netip.Prefix]*netAgg)
		}
		n := a.nets[p]
		if n == nil {
			a.nets[p] = bn // b is not used after the merge
			continue
		}
		n.first, n.last = min(n.first, bn.first), max(n.last, bn.last)
		n.evidence = min(n.evidence, bn.evidence)
		for k := range n.src {
			n.src[k] = addSat(n.src[k], bn.src[k])
		}
		for _, x := range []struct{ to, from map[string]struct{} }{{n.fams, bn.fams}, {n.sigs, bn.sigs}, {n.sensors, bn.sensors}} {
			for k := range x.from {
				x.to[k] = struct{}{}
			}
		}
	}
}
