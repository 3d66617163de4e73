package signatures

import (
	"fmt"
	"net/netip"
	"strings"
)

// RelativeOriginMax is the longest zone name (in characters, without the
// trailing dot) that a relative RPZ export is guaranteed to load under: a
// name is kept only if it still fits in 255 wire octets below an origin of
// this length. It covers origins like "rpz", "rpz.local" or "wormsink.rpz";
// a longer origin needs --zone, which checks every name against it exactly.
const RelativeOriginMax = 12

// RPZ policy data: CNAME to the root is NXDOMAIN, CNAME to "*." is NODATA.
const (
	rpzNXDomain = "."
	rpzNoData   = "*."
)

// RPZOptions says how RPZRecords renders a Set.
type RPZOptions struct {
	// Sinkhole holds the addresses of sinkhole answers: IPv4 ones become A
	// local data, IPv6 ones AAAA. A family without an address answers
	// NODATA, as the DNS shim does; with none at all a sinkhole name is
	// written as NODATA.
	Sinkhole []netip.Addr
	// Zone is the zone's name (without the trailing dot). Empty means the
	// owners are relative and must fit below any origin of up to
	// RelativeOriginMax characters.
	Zone string
	// KeepUnderscore writes sinkhole names containing '_' as A/AAAA local
	// data. BIND refuses such owners under its default check-names policy
	// (and then serves no policy at all), so by default they are written as
	// NODATA instead; with this set the zone needs `check-names primary
	// ignore;` in BIND.
	KeepUnderscore bool
}

// RPZRecord is one record of a response policy zone, or one listed name
// that could not be written (Skip is set, Type and Data are empty).
type RPZRecord struct {
	// Owner is relative to the zone origin ("*.sub.worm.example").
	Owner string
	// Type is "CNAME", "A" or "AAAA".
	Type string
	// Data is "." (NXDOMAIN), "*." (NODATA) or an address.
	Data string
	// Signature and Domain are the listed entry whose action this is.
	Signature *Signature
	Domain    *Domain
	// Covering marks a record that is not listed itself but spells out a
	// wildcard's reach for resolvers that apply DNS wildcard rules (BIND,
	// Unbound): there a name that exists in the zone, even as an empty
	// non-terminal, stops a shorter wildcard from matching below it.
	Covering bool
	// Note says why the record differs from the listed action.
	Note string
	// Skip says why the name could not be written at all.
	Skip string
}

// CheckZone validates an RPZ zone name ("" is valid: relative owners).
func CheckZone(name string) error {
	if name == "" {
		return nil
	}
	zone, wild, err := canonicalName(strings.TrimSuffix(name, "."))
	if err != nil || wild {
		return fmt.Errorf("zone name %q: %w", name, errNameSyntax)
	}
	if rpzLongest(len(zone)) < 1 {
		return fmt.Errorf("zone name %q leaves no room for owner names", name)
	}
	return nil
}

// rpzLongest is the longest owner, in presentation characters without the
// trailing dot, that fits below an origin of originLen characters: a name's
// wire form is its text length plus 2, the origin adds its length plus 1.
func rpzLongest(originLen int) int { return 255 - 2 - 1 - originLen }

// rpzReserved are the trigger labels RPZ resolvers read specially when they
// end an owner name; a listed domain under them would be misread as an IP
// or name server trigger.
var rpzReserved = []string{"rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"}

// RPZRecords renders the Set as response policy records and passes each to
// emit, listed names first in file order (each signature's records
// together), then the covering entries. The same rules serve the file export
// and a live zone, so every resolver loading the records answers every name
// as Set.MatchName and the shim's actions do:
//
//   - an exact listing wins over a wildcard, the longest wildcard wins and
//     "*.x" does not match x. Knot Resolver and PowerDNS Recursor match that
//     way by themselves; BIND and Unbound follow DNS wildcard rules, so for
//     every name in the zone (listed, or an empty non-terminal above a listed
//     name) that some wildcard covers, the name itself and "*.name" are
//     written with that wildcard's action unless they are listed;
//   - names that cannot fit below the origin are skipped, and so are names
//     under the RPZ trigger labels (rpz-ip and the like);
//   - sinkhole names with '_' become NODATA unless KeepUnderscore is set.
func RPZRecords(s *Set, opt RPZOptions, emit func(RPZRecord)) {
	originLen := RelativeOriginMax
	if opt.Zone != "" {
		originLen = len(strings.TrimSuffix(opt.Zone, "."))
	}
	longest := rpzLongest(originLen)
	var v4, v6 []string
	for _, ip := range opt.Sinkhole {
		if ip = ip.Unmap(); ip.Is4() {
			v4 = append(v4, ip.String())
		} else if ip.IsValid() {
			v6 = append(v6, ip.String())
		}
	}

	write := func(rec RPZRecord, action Action) {
		if len(rec.Owner) > longest {
			rec.Skip = fmt.Sprintf("%d characters do not fit below an origin of %d (at most %d)", len(rec.Owner), originLen, longest)
			emit(rec)
			return
		}
		if reservedOwner(rec.Owner) {
			rec.Skip = "ends in an RPZ trigger label, which resolvers would read as an IP or name-server trigger"
			emit(rec)
			return
		}
		switch {
		case action == NXDomain:
			rec.Type, rec.Data = "CNAME", rpzNXDomain
		case action == NoData || len(v4)+len(v6) == 0:
			rec.Type, rec.Data = "CNAME", rpzNoData
		case !opt.KeepUnderscore && strings.IndexByte(rec.Owner, '_') >= 0:
			rec.Type, rec.Data = "CNAME", rpzNoData
			rec.Note = "sinkhole answered as NODATA: BIND's default check-names refuses A/AAAA owners with '_' (export with --keep-underscore and set check-names primary ignore)"
		default:
			for _, ip := range v4 {
				rec.Type, rec.Data = "A", ip
				emit(rec)
			}
			for _, ip := range v6 {
				rec.Type, rec.Data = "AAAA", ip
				emit(rec)
			}
			return
		}
		emit(rec)
	}

	sigs := s.Signatures()
	type ref struct {
		sig *Signature
		d   *Domain
	}
	n := 0
	for si := range sigs {
		n += len(sigs[si].Domains)
	}
	wild := map[string]ref{}
	for si := range sigs {
		for di := range sigs[si].Domains {
			d := &sigs[si].Domains[di]
			if d.Wildcard {
				wild[d.Name] = ref{&sigs[si], d}
			}
			write(RPZRecord{Owner: d.Pattern(), Signature: &sigs[si], Domain: d}, d.Action)
		}
	}
	if len(wild) == 0 {
		return
	}

	// coverOf finds the longest wildcard strictly above name.
	coverOf := func(name string) (ref, bool) {
		for rest := name; ; {
			i := strings.IndexByte(rest, '.')
			if i < 0 {
				return ref{}, false
			}
			rest = rest[i+1:]
			if r, ok := wild[rest]; ok {
				return r, true
			}
		}
	}
	// Sized for the listed names and a parent each: growing a map of a
	// million names rehashed it over and over (a sixth of the export).
	seen := make(map[string]struct{}, 2*n)
	for si := range sigs {
		for di := range sigs[si].Domains {
			// Every node of the zone at or above a listed name, down to the
			// origin: a wildcard's base is a node too.
			for node := sigs[si].Domains[di].Name; node != ""; {
				k := len(seen)
				seen[node] = struct{}{} // one map operation: look up and mark
				if len(seen) == k {
					break // its ancestors were walked already
				}
				if cover, ok := coverOf(node); ok {
					if m, ok := s.MatchName(node); !ok || m.Domain.Wildcard {
						write(RPZRecord{Owner: node, Signature: cover.sig, Domain: cover.d, Covering: true}, cover.d.Action)
					}
					if _, ok := wild[node]; !ok {
						write(RPZRecord{Owner: "*." + node, Signature: cover.sig, Domain: cover.d, Covering: true}, cover.d.Action)
					}
				}
				i := strings.IndexByte(node, '.')
				if i < 0 {
					break
				}
				node = node[i+1:]
			}
		}
	}
}

func reservedOwner(owner string) bool {
	last := owner
	if i := strings.LastIndexByte(owner, '.'); i >= 0 {
		last = owner[i+1:]
	}
	for _, r := range rpzReserved {
		if last == r {
			return true
		}
	}
	return false
}

// The SOA and NS of the policy zone, as the file export writes them and
// the live primary serves them. The NS is a placeholder RPZ requires and
// resolvers never query; refresh and retry bound how late a secondary that
// missed a NOTIFY learns of a new serial.
const (
	RPZTTL     = 60
	RPZNS      = "localhost."
	RPZMbox    = "hostmaster.localhost."
	RPZRefresh = 3600
	RPZRetry   = 600
	RPZExpire  = 86400
	RPZMinTTL  = 60
)

// RPZSerial is the SOA serial of the set's zone. The parser refuses serials
// of 2^32 and more, which SOA serials cannot hold.
func RPZSerial(s *Set) uint32 { return uint32(s.Serial()) }
