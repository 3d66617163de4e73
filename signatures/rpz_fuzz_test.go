package signatures

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// FuzzRPZWildcardRules builds a random nest of listed names and wildcards
// and checks that the exported policy records answer every name of a small
// universe as MatchName does, both under DNS wildcard rules (BIND,
// Unbound: an existing name or empty non-terminal stops a shorter
// wildcard) and under longest match (Knot Resolver, PowerDNS Recursor).
func FuzzRPZWildcardRules(f *testing.F) {
	f.Add([]byte{0x10, 0x21, 0x05, 0x93})
	f.Add([]byte{0x01, 0x12, 0x23, 0x34, 0x45, 0x56, 0x67})
	f.Add([]byte{0xff, 0x00, 0x80, 0x7f, 0x3c})
	f.Add([]byte{0x41, 0x8d}) // *.c.t sinkhole, a.c.t nodata: z.a.c.t needs *.a.c.t
	labels := []string{"a", "b", "c"}
	// name decodes a byte into a name of 1-3 labels under "t".
	name := func(b byte) string {
		n := []string{labels[b%3]}
		if b&0x04 != 0 {
			n = append(n, labels[(b>>3)%3])
		}
		if b&0x20 != 0 {
			n = append(n, labels[(b>>4)%3])
		}
		return strings.Join(n, ".") + ".t"
	}
	var universe []string
	var walk func(prefix string, depth int)
	walk = func(suffix string, depth int) {
		universe = append(universe, suffix)
		if depth == 0 {
			return
		}
		for _, l := range append(labels, "z") {
			walk(l+"."+suffix, depth-1)
		}
	}
	walk("t", 4)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 24 {
			data = data[:24]
		}
		var b strings.Builder
		b.WriteString("serial: 1\nsignatures:\n  - id: f\n    family: F\n    domains:\n")
		seen := map[string]bool{}
		for _, c := range data {
			n := name(c)
			if c&0x40 != 0 {
				n = "*." + n
			}
			if seen[n] {
				continue
			}
			seen[n] = true
			fmt.Fprintf(&b, "      - name: %q\n        action: %s\n", n, Action((c>>7+(c&0x08)>>3)%3).String())
		}
		if len(seen) == 0 {
			return
		}
		s, err := Parse("fuzz.yaml", []byte(b.String()))
		if err != nil {
			t.Fatalf("%v\n%s", err, b.String())
		}
		zone := map[string]string{} // owner -> action as the records say it
		RPZRecords(s, RPZOptions{Sinkhole: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}, func(r RPZRecord) {
			if r.Skip != "" {
				t.Fatalf("%s skipped: %s", r.Owner, r.Skip)
			}
			a := map[string]string{"CNAME .": "nxdomain", "CNAME *.": "nodata", "A 192.0.2.1": "sinkhole"}[r.Type+" "+r.Data]
			if prev, ok := zone[r.Owner]; ok && prev != a {
				t.Fatalf("%s written twice: %s and %s", r.Owner, prev, a)
			}
			zone[r.Owner] = a
		})
		nodes := map[string]bool{}
		for o := range zone {
			for n := o; ; {
				nodes[n] = true
				i := strings.IndexByte(n, '.')
				if i < 0 {
					break
				}
				n = n[i+1:]
			}
		}
		for _, q := range universe {
			want := ""
			if m, ok := s.MatchName(q); ok {
				want = m.Domain.Action.String()
			}
			// DNS wildcard rules.
			dnsRules := ""
			if a, ok := zone[q]; ok {
				dnsRules = a
			} else if !nodes[q] {
				for ce := q; ; {
					i := strings.IndexByte(ce, '.')
					if i < 0 {
						ce = "" // the apex
					} else {
						ce = ce[i+1:]
					}
					if ce == "" || nodes[ce] {
						if ce != "" {
							dnsRules = zone["*."+ce]
						}
						break
					}
				}
			}
			// Longest match.
			longest := zone[q]
			if _, ok := zone[q]; !ok {
				for w := q; ; {
					i := strings.IndexByte(w, '.')
					if i < 0 {
						break
					}
					w = w[i+1:]
					if a, ok := zone["*."+w]; ok {
						longest = a
						break
					}
				}
			}
			if dnsRules != want || longest != want {
				t.Fatalf("%s: shim %q, DNS wildcard rules %q, longest match %q\nfile:\n%s\nzone: %v", q, want, dnsRules, longest, b.String(), zone)
			}
		}
	})
}
