package rpz

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"wormsink/signatures"
)

func zoneRecords(z *zone) []string {
	var out []string
	for r := range z.each {
		out = append(out, fmt.Sprint(r.Owner, r.Policy, r.Addr))
	}
	slices.Sort(out)
	return out
}

// TestDeltaTakesOldToNew: for random changes, the old zone with a delta's
// deletions and additions applied is exactly the new zone, and the packed
// journal round-trips every record.
func TestDeltaTakesOldToNew(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sink := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	names := func() []string {
		var n []string
		for i := range 3000 {
			if rng.IntN(3) == 0 {
				continue
			}
			switch rng.IntN(4) {
			case 0:
				n = append(n, fmt.Sprintf("nx:n%d.example", i))
			case 1:
				n = append(n, fmt.Sprintf("*.w%d.example", i))
			default:
				n = append(n, fmt.Sprintf("h%d.example", i))
			}
		}
		return n
	}
	set := func(serial int) *signatures.Set {
		s, err := signatures.Parse("t", []byte(sigYAML(serial, names()...)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	z := newZone("rpz.wormsink.", set(1), sink)
	for serial := 2; serial <= 5; serial++ {
		next := z.successor(set(serial), 3)
		d := next.journal[len(next.journal)-1]
		if d.from != uint32(serial-1) || d.to != uint32(serial) || len(next.journal) > 3 {
			t.Fatalf("journal %+v", next.journal)
		}
		have := map[string]bool{}
		for _, r := range zoneRecords(z) {
			have[r] = true
		}
		eachPacked(d.del, func(o string, p policy, a netip.Addr) bool {
			k := fmt.Sprint(o, p, a)
			if !have[k] {
				t.Fatalf("deletes %s, which the old zone lacks", k)
			}
			delete(have, k)
			return true
		})
		eachPacked(d.add, func(o string, p policy, a netip.Addr) bool {
			k := fmt.Sprint(o, p, a)
			if have[k] {
				t.Fatalf("adds %s, which the old zone has", k)
			}
			have[k] = true
			return true
		})
		var got []string
		for k := range have {
			got = append(got, k)
		}
		slices.Sort(got)
		if want := zoneRecords(next); !slices.Equal(got, want) {
			t.Fatalf("serial %d: old zone + delta has %d records, new zone %d", serial, len(got), len(want))
		}
		z = next
	}
	if _, ok := z.since(1); ok {
		t.Fatal("journal of 3 still reaches serial 1")
	}
	if ds, ok := z.since(2); !ok || len(ds) != 3 {
		t.Fatalf("since(2): %d deltas %v", len(ds), ok)
	}
}
